"""HERE EV Charge Points station → canonical connector records.

Reads v2 stations (``connectors`` groups with ``connectorType``, ``chargingPoint`` counts,
optional ``connectorStatuses``) and v3-style ``connectorGroups`` (``standard``,
``maxPower`` in W, ``connectorCount``). HERE v2 wraps lists
(``connectors: {connector: [...]}``, ``connectorStatuses: {connectorStatus: [...]}``,
``evStations: {evStation: [...]}``); wrapped and plain lists are both accepted.

Decisions DESIGN.md left open (also in the README):
- Each connector group is numbered by its position in the station (``g1``, ``g2``…);
  ``connectorStatuses`` entries are named by ``physicalReference``/``connectorId``/``id``
  when given, else by position: ``here:<station>#g<group>.<ref>``.
- Without ``connectorStatuses``, ``numberOfConnectors`` connectors are synthesized from the
  ``numberOf*`` counts in a fixed order (AVAILABLE, CHARGING, RESERVED, OUTOFORDER, then
  UNKNOWN for the remainder), so a count change moves as few connectors as possible.
  Counts summing above ``numberOfConnectors`` are rejected (``absurd_value``).
- A group with no dynamic data at all yields its connectors as UNKNOWN with ``live=false``.
- Event time: status entry ``lastUpdateTimestamp``, else the group's (chargingPoint or
  connector), else the station's.
- ``powerClass`` comes from ``maxPowerLevel`` when known, else from ``customerChargeLevel``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from ..values import (
    MAX_AMPERAGE,
    MAX_POWER_KW,
    MAX_VOLTAGE,
    Warnings,
    clean_str,
    coordinate_pair,
    norm_key,
    positive,
    standard_from_text,
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
    clean_id,
    object_field,
    unwrap_list,
    whole_document,
)
from .ocpi import STATUS_TABLE as OCPI_STATUS_TABLE

#: DESIGN §3, column "HERE": v2 state strings, v3 strings (OCPI enums plus UNAVAILABLE,
#: OFFLINE, OTHER) and the legacy numeric connectorstatuses codes 0–9.
STATUS_TABLE: dict[str, Status] = {
    **OCPI_STATUS_TABLE,
    "OCCUPIED": Status.CHARGING,
    "OUTOFSERVICE": Status.OUTOFORDER,
    "UNAVAILABLE": Status.BLOCKED,
    "OFFLINE": Status.UNKNOWN,
    "OTHER": Status.UNKNOWN,
    "UNSPECIFIED": Status.UNKNOWN,
    "FAULTED": Status.OUTOFORDER,
    "MAINTAINED": Status.INOPERATIVE,
    "0": Status.UNKNOWN,
    "1": Status.PLANNED,
    "2": Status.AVAILABLE,
    "3": Status.CHARGING,
    "4": Status.OUTOFORDER,
    "5": Status.INOPERATIVE,
    "6": Status.INOPERATIVE,
    "7": Status.UNKNOWN,
    "8": Status.RESERVED,
    "9": Status.UNKNOWN,
}

#: ``numberOf*`` counters of a chargingPoint, in synthesis order.
COUNTERS: tuple[tuple[str, Status], ...] = (
    ("numberOfAvailable", Status.AVAILABLE),
    ("numberOfInUse", Status.CHARGING),
    ("numberOfReserved", Status.RESERVED),
    ("numberOfOutOfService", Status.OUTOFORDER),
)

S = ConnectorStandard
#: HERE connectorType id → OCPI standard (``samples/ENUMS.md`` §4.1).
CONNECTOR_TYPES: dict[int, ConnectorStandard] = {
    5: S.DOMESTIC_B,
    6: S.NEMA_5_20,
    7: S.DOMESTIC_D,
    8: S.DOMESTIC_E,
    9: S.DOMESTIC_F,
    10: S.DOMESTIC_F,
    11: S.DOMESTIC_G,
    12: S.DOMESTIC_H,
    13: S.DOMESTIC_I,
    14: S.DOMESTIC_I,
    15: S.DOMESTIC_I,
    16: S.DOMESTIC_J,
    17: S.DOMESTIC_J,
    18: S.DOMESTIC_J,
    19: S.DOMESTIC_J,
    20: S.DOMESTIC_K,
    21: S.DOMESTIC_K,
    22: S.DOMESTIC_L,
    23: S.DOMESTIC_M,
    24: S.DOMESTIC_N,
    26: S.TESLA_S,
    27: S.TESLA_S,
    28: S.TESLA_S,
    29: S.CHADEMO,
    30: S.IEC_62196_T1,
    31: S.IEC_62196_T2,
    32: S.IEC_62196_T3C,
    33: S.IEC_62196_T1_COMBO,
    34: S.IEC_62196_T2_COMBO,
    35: S.IEC_60309_2_single_16,
    36: S.IEC_60309_2_three_32,
    38: S.IEC_60309_2_single_16,
    39: S.IEC_60309_2_three_32,
    42: S.DOMESTIC_J,
    43: S.TESLA_S,
    45: S.IEC_62196_T2,
    47: S.DOMESTIC_I,
    48: S.DOMESTIC_A,
    49: S.DOMESTIC_C,
    50: S.IEC_62196_T3A,
    51: S.NEMA_14_50,
    52: S.GBT_AC,
    53: S.GBT_DC,
}

_NUMBERS = re.compile(r"\d+(?:\.\d+)?")
MAX_CONNECTORS_PER_GROUP = 100


def map_status(raw: Any) -> Status:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise Rejection("wrong_type", f"HERE status must be text or a code, got {raw!r:.40}")
    status = STATUS_TABLE.get(norm_key(str(raw)))
    if status is None:
        raise Rejection("unknown_status", f"HERE status {str(raw)[:40]!r} is not known")
    return status


def range_max(text: Any) -> float | None:
    """Upper end of ``"100-120V AC"`` / ``"12A-80A"`` / ``"32A"``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        return None
    numbers = [float(n) for n in _NUMBERS.findall(text)]
    return max(numbers) if numbers else None


def count(value: Any, what: str) -> int:
    """A ``numberOf*`` counter (int or digit string, as some clients type them)."""
    if value.__class__ is int and 0 <= value <= MAX_CONNECTORS_PER_GROUP:
        return value
    if value is None:
        return 0
    if isinstance(value, bool):
        raise Rejection("wrong_type", f"{what} must be a count")
    number = to_float(value)
    if number is None or not number.is_integer():
        raise Rejection("wrong_type", f"{what} must be a whole number, got {value!r:.40}")
    if number < 0 or number > MAX_CONNECTORS_PER_GROUP:
        raise Rejection("absurd_value", f"{what} = {value!r:.20} is out of range")
    return int(number)


def _attribute_key(group: dict[str, Any], point: Mapping[str, Any]) -> tuple[Any, ...]:
    ctype = group.get("connectorType")
    fixed = group.get("fixedCable")
    return (
        ctype.get("id") if isinstance(ctype, dict) else None,
        group.get("standard"),
        # the format itself, not the boolean: a key without booleans is cheaper to cache
        ConnectorFormat.CABLE if fixed is True else ConnectorFormat.SOCKET if fixed is False else None,
        point.get("voltsRange"),
        point.get("phases"),
        point.get("ampsRange"),
        group.get("maxPowerLevel"),
        group.get("maxPower"),
        group.get("customerChargeLevel"),
    )


def parse_attributes(key: tuple[Any, ...], warnings: Warnings) -> Attributes:
    type_id, raw_standard, fmt, volts_text, phases, amps_text, power_kw_raw, power_w_raw, level_raw = key
    warn = warnings.check
    standard = None
    if type_id is not None:
        number = to_float(type_id)
        if number is not None and number.is_integer():
            standard = CONNECTOR_TYPES.get(int(number))
    elif raw_standard is not None:  # v3 groups use OCPI standards
        standard = warn("standard", raw_standard, standard_from_text(raw_standard))
    power_type = None
    if isinstance(volts_text, str) and "DC" in volts_text.upper():
        power_type = PowerType.DC
    elif isinstance(volts_text, str) and "AC" in volts_text.upper():
        power_type = PowerType.AC_3_PHASE if to_float(phases) == 3 else PowerType.AC_1_PHASE
    volts = warn("voltage", volts_text, to_int_in(range_max(volts_text), MAX_VOLTAGE))
    amps = warn("amperage", amps_text, to_int_in(range_max(amps_text), MAX_AMPERAGE))
    if power_kw_raw is not None or power_w_raw is None:
        power_kw = warn("maxPowerKw", power_kw_raw, positive(to_float(power_kw_raw), MAX_POWER_KW))
    else:  # v3: watts
        watts = to_float(power_w_raw)
        power_kw = warn("maxPowerKw", power_w_raw, positive(None if watts is None else watts / 1000, MAX_POWER_KW))
    level = to_float(level_raw)
    klass = int(level) if level is not None and level.is_integer() and 1 <= level <= 6 else None
    return Attributes(
        standard=standard,
        format=fmt,
        powerType=power_type,
        maxPowerKw=power_kw,
        voltage=volts,
        amperage=amps,
        powerClass=klass,
    )


_ATTRIBUTES = AttributeCache(parse_attributes)


class HereAdapter:
    source: ClassVar[Source] = Source.here

    @whole_document
    def normalize(self, document: Any, ctx: NormalizeContext) -> NormalizeResult:
        result = NormalizeResult()
        stations = self._stations(document)
        if stations is None:
            self._station(document, ctx, result)
            return result
        for index, station in enumerate(stations):
            try:
                self._station(station, ctx, result)
            except Rejection as rejection:
                result.rejections.append(rejection.at(f"stations[{index}]"))
        return result

    @staticmethod
    def _stations(document: Any) -> list[Any] | None:
        """A response envelope or a list of stations; ``None`` for a single station."""
        if isinstance(document, list):
            return document
        if isinstance(document, dict):
            if "evStations" in document:
                return unwrap_list(document["evStations"], "evStation", "evStations") or []
            for key in ("items", "stations"):
                if isinstance(document.get(key), list):
                    return document[key]
        return None

    def _station(self, station: Any, ctx: NormalizeContext, result: NormalizeResult) -> None:
        if not isinstance(station, dict):
            raise Rejection("not_an_object", f"HERE station must be an object, got {type(station).__name__}")
        station_id = clean_id(station.get("id"), "HERE station id")
        if station_id is None:
            kind = "missing_id" if station.get("id") is None else "invalid_id"
            raise Rejection(kind, "HERE station has no usable id")
        evse_uid = f"here:{station_id}"
        position = object_field(station, "position")
        address = object_field(station, "address")
        lat, lon = coordinate_pair(
            position.get("latitude", position.get("lat")), position.get("longitude", position.get("lng")), ctx.warnings
        )
        pool = clean_id(station.get("poolId"), "HERE poolId")
        out = EvseRecords(
            Source.here,
            evse_uid,
            ctx,
            locationId=f"here:{pool}" if pool else None,
            latitude=lat,
            longitude=lon,
            locationName=clean_str(station.get("name")),
            city=clean_str(address.get("city")),
            countryCode=clean_str(address.get("country")),
        )
        if "connectorGroups" in station:
            groups = unwrap_list(station["connectorGroups"], "connectorGroup", "connectorGroups")
        else:
            groups = unwrap_list(station.get("connectors"), "connector", "connectors")
        if not groups:
            result.skip("station_without_connectors")
            return
        complete = True
        station_time = station.get("lastUpdateTimestamp")
        for index, group in enumerate(groups, start=1):
            try:
                self._group(group, index, out, station_time, ctx)
            except Rejection as rejection:
                complete = False
                result.rejections.append(rejection.at(f"connectors[{index - 1}]"))
        if complete:
            out.mark_snapshot()
        result.records.extend(out.records)

    def _group(self, group: Any, index: int, out: EvseRecords, station_time: Any, ctx: NormalizeContext) -> None:
        """Add one connector group's connectors to ``out``. All or nothing: the group's
        records are added only once every one of them could be read."""
        if not isinstance(group, dict):
            raise Rejection("not_an_object", f"connector group must be an object, got {type(group).__name__}")
        point = object_field(group, "chargingPoint")
        attributes = _ATTRIBUTES.get(_attribute_key(group, point), ctx)
        group_time = point.get("lastUpdateTimestamp") or group.get("lastUpdateTimestamp")
        prefix = f"{out.evse_uid}#g{index}"
        group_id = f"g{index}"

        statuses = unwrap_list(group.get("connectorStatuses"), "connectorStatus", "connectorStatuses")
        if statuses:
            entries = []
            for position, entry in enumerate(statuses, start=1):
                if not isinstance(entry, dict):
                    raise Rejection("not_an_object", "connectorStatus entry must be an object")
                raw = next(
                    (entry[k] for k in ("state", "status", "statusId", "connectorStatus") if entry.get(k) is not None),
                    None,
                )
                if raw is None:
                    raise Rejection("missing_status", "connectorStatus entry has no state")
                ref = clean_id(
                    next(
                        (entry[k] for k in ("physicalReference", "connectorId", "id") if entry.get(k) is not None), None
                    ),
                    "connectorStatus reference",
                ) or str(position)
                entries.append((ref, map_status(raw), str(raw).strip(), entry.get("lastUpdateTimestamp")))
            for ref, status, shown, entry_time in entries:
                out.add(
                    f"{prefix}.{ref}",
                    f"{group_id}.{ref}",
                    status,
                    shown,
                    True,
                    attributes,
                    (entry_time, group_time, station_time),
                )
            return

        total_raw = point.get("numberOfConnectors", group.get("connectorCount"))
        total = count(total_raw, "numberOfConnectors") if total_raw is not None else 1
        counted = []
        counted_total = 0
        dynamic = False  # a group that names none of the counters has no dynamic data
        for key, status in COUNTERS:
            if key in point:
                dynamic = True
                n = count(point[key], key)
                counted_total += n
                counted.append((key, status, n))
        if counted_total > total:
            raise Rejection("absurd_value", f"status counts {counted_total} exceed numberOfConnectors {total}")
        times = (group_time, station_time)
        if not dynamic:  # no dynamic data: UNKNOWN, not live
            for k in range(1, total + 1):
                out.add(f"{prefix}.{k}", f"{group_id}.{k}", Status.UNKNOWN, None, False, attributes, times)
            return
        k = 0
        for key, status, n in counted:
            for _ in range(n):
                k += 1
                out.add(f"{prefix}.{k}", f"{group_id}.{k}", status, key, True, attributes, times)
        while k < total:
            k += 1
            out.add(f"{prefix}.{k}", f"{group_id}.{k}", Status.UNKNOWN, "remainder", True, attributes, times)
