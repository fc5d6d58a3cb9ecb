"""Open Charge Map POI (``Connections[]`` of ConnectionInfo) → canonical connector records.

Verbose (nested ``ConnectionType``/``StatusType`` objects) and compact (ID-only, null keys
dropped) API output are both read; a JSON array or ``{"data": [...]}`` holds many POIs.

Decisions DESIGN.md left open (also in the README):
- A connection without its own ``StatusTypeID`` inherits the POI's; with neither it is
  UNKNOWN (DESIGN: null → UNKNOWN). An ID outside OCM's reference list is rejected
  (``unknown_status``) rather than guessed.
- ``live`` is true only for the automated statuses 10 and 20; every other StatusType is
  curated data (``live=false``).
- ``Quantity`` N > 1 expands to ``ocm:<ID>#1..N``; N ≤ 1 or null is one ``ocm:<ID>``;
  N > 50 is an absurd value and rejects that connection.
- ``PowerKW`` > 1000 is watts. Without it, power is A·V (×√3 on three-phase,
  CurrentTypeID 20).
- POI ``ID`` must be a positive integer (the Mongo export template's ``-1`` is rejected).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..values import (
    MAX_AMPERAGE,
    MAX_POWER_KW,
    MAX_VOLTAGE,
    Warnings,
    clean_str,
    coordinate_pair,
    positive,
    to_float,
    to_int_in,
)
from ..vocabulary import ConnectorFormat, ConnectorStandard, PowerType, Source, Status
from .base import (
    AttributeCache,
    Attributes,
    EvseRecords,
    NormalizeContext,
    NormalizeResult,
    Rejection,
    list_field,
    object_field,
    whole_document,
)

#: DESIGN §3, column "OCM StatusTypeID": id → (canonical status, live).
STATUS_TABLE: dict[int | None, tuple[Status, bool]] = {
    None: (Status.UNKNOWN, False),
    0: (Status.UNKNOWN, False),
    10: (Status.AVAILABLE, True),
    20: (Status.CHARGING, True),
    30: (Status.INOPERATIVE, False),
    50: (Status.AVAILABLE, False),
    75: (Status.UNKNOWN, False),
    100: (Status.OUTOFORDER, False),
    150: (Status.PLANNED, False),
    200: (Status.REMOVED, False),
    210: (Status.REMOVED, False),
}

S = ConnectorStandard
F = ConnectorFormat
#: OCM ConnectionTypeID → (OCPI standard, format when the type implies one). From OCM's
#: reference list (``samples/ENUMS.md`` §1.4); ambiguous or non-OCPI types map to None.
CONNECTION_TYPES: dict[int, tuple[ConnectorStandard | None, ConnectorFormat | None]] = {
    1: (S.IEC_62196_T1, None),
    2: (S.CHADEMO, F.CABLE),
    3: (S.DOMESTIC_G, F.SOCKET),
    4: (S.IEC_60309_2_single_16, F.SOCKET),
    8: (S.TESLA_R, F.CABLE),
    9: (S.NEMA_5_20, F.SOCKET),
    10: (S.NEMA_14_30, F.SOCKET),
    11: (S.NEMA_14_50, F.SOCKET),
    13: (S.DOMESTIC_C, F.SOCKET),
    16: (S.IEC_60309_2_single_16, F.SOCKET),
    17: (S.IEC_60309_2_three_32, F.SOCKET),
    22: (S.DOMESTIC_B, F.SOCKET),
    23: (S.DOMESTIC_E, F.SOCKET),
    25: (S.IEC_62196_T2, F.SOCKET),
    26: (S.IEC_62196_T3C, F.SOCKET),
    27: (S.TESLA_S, F.CABLE),
    28: (S.DOMESTIC_F, F.SOCKET),
    29: (S.DOMESTIC_I, F.SOCKET),
    30: (S.TESLA_S, F.CABLE),
    32: (S.IEC_62196_T1_COMBO, F.CABLE),
    33: (S.IEC_62196_T2_COMBO, F.CABLE),
    34: (S.IEC_60309_2_single_16, F.SOCKET),
    35: (S.IEC_60309_2_three_32, F.SOCKET),
    36: (S.IEC_62196_T3A, F.SOCKET),
    1036: (S.IEC_62196_T2, F.CABLE),
    1037: (S.DOMESTIC_J, F.SOCKET),
    1038: (S.GBT_AC, F.SOCKET),
    1039: (S.GBT_AC, F.CABLE),
    1040: (S.GBT_DC, F.CABLE),
    1044: (S.CHAOJI, F.CABLE),
}
#: Known OCM types with no OCPI equivalent (not a warning when seen).
NO_OCPI_EQUIVALENT = frozenset({0, 5, 6, 7, 14, 15, 18, 21, 24, 31, 1041, 1042})

CURRENT_TYPES = {10: PowerType.AC_1_PHASE, 20: PowerType.AC_3_PHASE, 30: PowerType.DC}
MAX_QUANTITY = 50


def _nested_id(obj: dict[str, Any], key: str, nested: str) -> Any:
    """``StatusTypeID`` or, in verbose output, ``StatusType.ID``."""
    value = obj.get(key)
    if value is None and isinstance(obj.get(nested), dict):
        value = obj[nested].get("ID")
    return value


def _int_id(value: Any) -> int | None:
    """An integer identifier from an int or digit string; anything else is None."""
    if value.__class__ is int:  # the common case (bool is a subclass, never ``int`` itself)
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only (int() also reads "²" or "٣"), and few enough to be an id
        if text.lstrip("-").isdigit() and text.isascii() and len(text) <= 18:
            return int(text)
    return None


def map_status(raw: Any) -> tuple[Status, bool]:
    if raw is None:
        return STATUS_TABLE[None]
    status_id = _int_id(raw)
    if status_id is None:
        raise Rejection("wrong_type", f"StatusTypeID must be an integer, got {raw!r:.40}")
    if status_id not in STATUS_TABLE:
        raise Rejection("unknown_status", f"StatusTypeID {status_id} is not an OCM status type")
    return STATUS_TABLE[status_id]


def _attribute_key(conn: dict[str, Any]) -> tuple[Any, ...]:
    return (
        _nested_id(conn, "ConnectionTypeID", "ConnectionType"),
        _nested_id(conn, "CurrentTypeID", "CurrentType"),
        conn.get("Voltage"),
        conn.get("Amps"),
        conn.get("PowerKW"),
    )


def parse_attributes(key: tuple[Any, ...], warnings: Warnings) -> Attributes:
    raw_type, raw_current, raw_volts, raw_amps, raw_power = key
    warn = warnings.check
    standard = fmt = None
    type_id = _int_id(raw_type)
    if type_id is not None and type_id in CONNECTION_TYPES:
        standard, fmt = CONNECTION_TYPES[type_id]
    elif type_id is not None and type_id not in NO_OCPI_EQUIVALENT:
        warnings.bump("standard")
    current_id = _int_id(raw_current)
    power_type = warn("powerType", raw_current, CURRENT_TYPES.get(current_id))
    volts = warn("voltage", raw_volts, to_int_in(raw_volts, MAX_VOLTAGE))
    amps = warn("amperage", raw_amps, to_int_in(raw_amps, MAX_AMPERAGE))
    power = to_float(raw_power)
    if power is not None and power > 1000:
        power = power / 1000
    power_kw = warn("maxPowerKw", raw_power, positive(power, MAX_POWER_KW))
    if power_kw is None and volts is not None and amps is not None:
        factor = 3**0.5 if power_type is PowerType.AC_3_PHASE else 1.0
        power_kw = positive(round(volts * amps * factor / 1000, 3), MAX_POWER_KW)
    return Attributes(
        standard=standard, format=fmt, powerType=power_type, maxPowerKw=power_kw, voltage=volts, amperage=amps
    )


_ATTRIBUTES = AttributeCache(parse_attributes)


def connection_attributes(conn: dict[str, Any], ctx: NormalizeContext) -> Attributes:
    return _ATTRIBUTES.get(_attribute_key(conn), ctx)


class OcmAdapter:
    source: ClassVar[Source] = Source.ocm

    @whole_document
    def normalize(self, document: Any, ctx: NormalizeContext) -> NormalizeResult:
        result = NormalizeResult()
        if isinstance(document, dict) and isinstance(document.get("data"), list):
            document = document["data"]
        if isinstance(document, list):
            for index, poi in enumerate(document):
                try:
                    self._poi(poi, ctx, result)
                except Rejection as rejection:
                    result.rejections.append(rejection.at(f"[{index}]"))
            return result
        self._poi(document, ctx, result)
        return result

    def _poi(self, poi: Any, ctx: NormalizeContext, result: NormalizeResult) -> None:
        if not isinstance(poi, dict):
            raise Rejection("not_an_object", f"OCM POI must be an object, got {type(poi).__name__}")
        if "ID" not in poi:
            if "Connections" not in poi:
                raise Rejection("unrecognized_document", "not an OCM POI (no ID, no Connections)")
            raise Rejection("missing_id", "OCM POI has no ID")
        poi_id = _int_id(poi.get("ID"))
        if poi_id is None or poi_id <= 0:
            raise Rejection("invalid_id", f"OCM POI ID must be a positive integer, got {poi.get('ID')!r:.40}")
        evse_uid = f"ocm:{poi_id}"
        address = object_field(poi, "AddressInfo")
        country = object_field(address, "Country")
        operator = object_field(poi, "OperatorInfo")
        lat, lon = coordinate_pair(address.get("Latitude"), address.get("Longitude"), ctx.warnings)
        if lat == 0 and lon == 0:  # OCM's blank template uses 0,0 for "no position"
            lat = lon = None
        out = EvseRecords(
            Source.ocm,
            evse_uid,
            ctx,
            locationId=evse_uid,
            evseDisplayId=clean_str(poi.get("UUID")),
            latitude=lat,
            longitude=lon,
            locationName=clean_str(address.get("Title")),
            operatorName=clean_str(operator.get("Title")),
            city=clean_str(address.get("Town")),
            countryCode=clean_str(country.get("ISOCode")),
        )
        poi_status_raw = _nested_id(poi, "StatusTypeID", "StatusType")
        time_candidates = (poi.get("DateLastStatusUpdate"),)
        connections = list_field(poi, "Connections", "POI Connections")
        if not connections:
            result.skip("poi_without_connections")
            return
        complete = True
        for index, conn in enumerate(connections):
            try:
                self._connection(conn, out, poi_status_raw, time_candidates, ctx)
            except Rejection as rejection:
                complete = False
                result.rejections.append(rejection.at(f"Connections[{index}]"))
        if complete:
            out.mark_snapshot()
        result.records.extend(out.records)

    def _connection(
        self,
        conn: Any,
        out: EvseRecords,
        poi_status_raw: Any,
        time_candidates: tuple[Any, ...],
        ctx: NormalizeContext,
    ) -> None:
        if not isinstance(conn, dict):
            raise Rejection("not_an_object", f"ConnectionInfo must be an object, got {type(conn).__name__}")
        conn_id = _int_id(conn.get("ID"))
        if conn_id is None:
            kind = "missing_id" if conn.get("ID") is None else "invalid_id"
            raise Rejection(kind, f"ConnectionInfo ID must be an integer, got {conn.get('ID')!r:.40}")
        raw_status = _nested_id(conn, "StatusTypeID", "StatusType")
        if raw_status is None:
            raw_status = poi_status_raw
        status, live = map_status(raw_status)
        raw_quantity = conn.get("Quantity")
        quantity = 1
        if raw_quantity is not None:
            number = _int_id(raw_quantity)
            if number is None:
                raise Rejection("wrong_type", f"Quantity must be an integer, got {raw_quantity!r:.40}")
            if number > MAX_QUANTITY:
                raise Rejection("absurd_value", f"Quantity {number} exceeds {MAX_QUANTITY}")
            quantity = max(number, 1)
        attributes = connection_attributes(conn, ctx)
        shown = None if raw_status is None else str(raw_status)
        if quantity == 1:
            out.add(f"ocm:{conn_id}", str(conn_id), status, shown, live, attributes, time_candidates)
            return
        # Quantity N: N identical connectors ocm:<ID>#1..N (DESIGN §2)
        for k in range(1, quantity + 1):
            out.add(f"ocm:{conn_id}#{k}", f"{conn_id}#{k}", status, shown, live, attributes, time_candidates)
