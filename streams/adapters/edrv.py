"""eDRV CSMS Connector Object / charge-station object → canonical connector records.

Decisions DESIGN.md left open (also in the README):
- A Connector Object must name its charge station (``chargestation`` as an id or an object
  with ``_id``; ``chargestation_id``/``chargeStation`` also read). Without it the EVSE is
  unknown and the document is rejected (``missing_id``): the v1.0 docs example carries
  only ``endpoint``/``organization``, which do not identify a station.
- A charge-station object's embedded ``connectors[]`` is a full snapshot of the station.
  One that lists connector ids only (v1.0 ``evses: [ids]``) carries no status: skipped.
- ``active=false`` → INOPERATIVE (DESIGN). A station reported ``online=false`` makes its
  connectors UNKNOWN — the OCPI convention for offline (DESIGN is silent for eDRV).
- Status spellings are OCPP 1.6/2.0.1 ChargePointStatus in any case; anything else → UNKNOWN.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..models import ConnectorFormat, ConnectorStandard, Source, Status
from ..values import (
    MAX_POWER_KW,
    Warnings,
    clean_str,
    coordinate_pair,
    format_from_text,
    norm_key,
    positive,
    power_type_from_text,
    standard_from_text,
    to_float,
)
from .base import (
    AttributeCache,
    Attributes,
    EvseRecords,
    NormalizeContext,
    NormalizeResult,
    Rejection,
    list_field,
)

#: DESIGN §3, column "OCPP 1.6 & eDRV" plus OCPP 2.0.1. Anything else maps to UNKNOWN.
STATUS_TABLE: dict[str, Status] = {
    "AVAILABLE": Status.AVAILABLE,
    "PREPARING": Status.CHARGING,
    "CHARGING": Status.CHARGING,
    "SUSPENDEDEV": Status.CHARGING,
    "SUSPENDEDEVSE": Status.CHARGING,
    "FINISHING": Status.CHARGING,
    "OCCUPIED": Status.CHARGING,
    "RESERVED": Status.RESERVED,
    "UNAVAILABLE": Status.INOPERATIVE,
    "FAULTED": Status.OUTOFORDER,
}

S = ConnectorStandard
F = ConnectorFormat
#: eDRV ``type`` (v1.0 and v1.1 docs) and OCPP 2.0.1 ConnectorEnumType → (standard, format).
CONNECTOR_TYPES: dict[str, tuple[ConnectorStandard | None, ConnectorFormat | None]] = {
    norm_key(name): value
    for name, value in {
        "CCS1": (S.IEC_62196_T1_COMBO, F.CABLE),
        "CCS2": (S.IEC_62196_T2_COMBO, F.CABLE),
        "G105": (S.CHADEMO, F.CABLE),
        "CHADEMO": (S.CHADEMO, F.CABLE),
        "Tesla": (S.TESLA_S, F.CABLE),
        "J1772": (S.IEC_62196_T1, None),
        "Type1": (S.IEC_62196_T1, None),
        "Type2": (S.IEC_62196_T2, None),
        "cCCS1": (S.IEC_62196_T1_COMBO, F.CABLE),
        "cCCS2": (S.IEC_62196_T2_COMBO, F.CABLE),
        "cG105": (S.CHADEMO, F.CABLE),
        "cTesla": (S.TESLA_S, F.CABLE),
        "cType1": (S.IEC_62196_T1, F.CABLE),
        "cType2": (S.IEC_62196_T2, F.CABLE),
        "sType2": (S.IEC_62196_T2, F.SOCKET),
        "sType3": (S.IEC_62196_T3C, F.SOCKET),
        "s309-1P-16A": (S.IEC_60309_2_single_16, F.SOCKET),
        "s309-3P-16A": (S.IEC_60309_2_three_16, F.SOCKET),
        "s309-3P-32A": (S.IEC_60309_2_three_32, F.SOCKET),
        "sCEE-7-7": (S.DOMESTIC_F, F.SOCKET),
        "Pan": (S.PANTOGRAPH_TOP_DOWN, None),
    }.items()
}


def map_status(raw: Any) -> Status:
    if not isinstance(raw, str):
        raise Rejection("wrong_type", f"eDRV status must be a string, got {type(raw).__name__}")
    return STATUS_TABLE.get(norm_key(raw), Status.UNKNOWN)


def _ref_id(value: Any) -> str | None:
    """An id given directly or as an embedded object with ``_id``."""
    if isinstance(value, dict):
        value = value.get("_id")
    return clean_str(value)


def parse_attributes(key: tuple[Any, ...], warnings: Warnings) -> Attributes:
    raw_type, raw_format, raw_power_type, raw_power = key
    warn = warnings.check
    standard, fmt = None, None
    if isinstance(raw_type, str):
        standard, fmt = CONNECTOR_TYPES.get(norm_key(raw_type)) or (standard_from_text(raw_type), None)
    warn("standard", raw_type, standard)
    own_format = warn("format", raw_format, format_from_text(raw_format))
    return Attributes(
        standard=standard,
        format=own_format or fmt,
        powerType=warn("powerType", raw_power_type, power_type_from_text(raw_power_type)),
        maxPowerKw=warn("maxPowerKw", raw_power, positive(to_float(raw_power), MAX_POWER_KW)),
    )


_ATTRIBUTES = AttributeCache(parse_attributes)


def connector_attributes(conn: dict[str, Any], ctx: NormalizeContext) -> Attributes:
    key = (conn.get("type"), conn.get("format"), conn.get("power_type", conn.get("powerType")), conn.get("power"))
    return _ATTRIBUTES.get(key, ctx)


class EdrvAdapter:
    source: ClassVar[Source] = Source.edrv

    def normalize(self, document: Any, ctx: NormalizeContext) -> NormalizeResult:
        result = NormalizeResult()
        if isinstance(document, dict) and isinstance(document.get("result"), list | dict):
            document = document["result"]  # eDRV API envelope {"ok": true, "result": ...}
        if isinstance(document, list):
            for index, item in enumerate(document):
                try:
                    self._document(item, ctx, result)
                except Rejection as rejection:
                    result.rejections.append(rejection.at(f"[{index}]"))
            return result
        self._document(document, ctx, result)
        return result

    def _document(self, doc: Any, ctx: NormalizeContext, result: NormalizeResult) -> None:
        if not isinstance(doc, dict):
            raise Rejection("not_an_object", f"eDRV object must be an object, got {type(doc).__name__}")
        if "connectors" in doc or "protocol" in doc or "evses" in doc:
            self._station(doc, ctx, result)
            return
        station_id = _ref_id(doc.get("chargestation") or doc.get("chargestation_id") or doc.get("chargeStation"))
        if station_id is None:
            if clean_str(doc.get("_id")) is None:
                raise Rejection("missing_id", "eDRV connector has no _id and no chargestation")
            raise Rejection("missing_id", "eDRV connector does not name its chargestation")
        out = EvseRecords(Source.edrv, f"edrv:{station_id}", ctx)
        self._connector(doc, out, None, None, ctx, result)
        result.records.extend(out.records)

    def _station(self, station: dict[str, Any], ctx: NormalizeContext, result: NormalizeResult) -> None:
        station_id = clean_str(station.get("_id"))
        if station_id is None:
            kind = "missing_id" if station.get("_id") is None else "invalid_id"
            raise Rejection(kind, "eDRV charge station has no usable _id")
        evse_uid = f"edrv:{station_id}"
        coords = station.get("coordinates")
        lat = lon = None
        if isinstance(coords, list) and len(coords) == 2:
            lat, lon = coordinate_pair(coords[1], coords[0], ctx.warnings)  # GeoJSON order: [lon, lat]
        location = clean_str(station.get("location"))
        out = EvseRecords(
            Source.edrv,
            evse_uid,
            ctx,
            locationId=f"edrv:{location}" if location else None,
            evseDisplayId=clean_str(station.get("endpoint")),
            latitude=lat,
            longitude=lon,
            locationName=clean_str(station.get("name")),
        )
        connectors = list_field(station, "connectors", "chargestation connectors")
        if not connectors or not any(isinstance(c, dict) for c in connectors):
            result.skip("station_without_connector_objects")
            return
        complete = True
        online = station.get("online")
        station_time = station.get("updatedAt")
        for index, conn in enumerate(connectors):
            try:
                self._connector(conn, out, online, station_time, ctx, result)
            except Rejection as rejection:
                complete = False
                result.rejections.append(rejection.at(f"connectors[{index}]"))
        if complete:
            out.mark_snapshot()
        result.records.extend(out.records)

    def _connector(
        self,
        conn: Any,
        out: EvseRecords,
        station_online: Any,
        station_time: Any,
        ctx: NormalizeContext,
        result: NormalizeResult,
    ) -> None:
        if not isinstance(conn, dict):
            raise Rejection("not_an_object", f"eDRV connector must be an object, got {type(conn).__name__}")
        get = conn.get
        connector_id = clean_str(get("_id"))
        if connector_id is None:
            kind = "missing_id" if get("_id") is None else "invalid_id"
            raise Rejection(kind, "eDRV connector has no usable _id")
        ocpp_id = get("ocppId")
        if ocpp_id is not None and not isinstance(ocpp_id, bool) and to_float(ocpp_id) == 0:
            result.skip("edrv_virtual_connector")  # ocppId 0 = the whole station (DESIGN §3)
            return
        raw_status = get("status")
        if raw_status is None:
            raise Rejection("missing_status", f"eDRV connector {connector_id!r} has no status")
        status = map_status(raw_status)
        shown = raw_status.strip()
        if get("active") is False:
            status, shown = Status.INOPERATIVE, f"{shown} (active=false)"
        elif station_online is False and status not in (Status.INOPERATIVE, Status.OUTOFORDER):
            status, shown = Status.UNKNOWN, f"{shown} (station online=false)"
        out.add(
            f"edrv:{connector_id}",
            clean_str(ocpp_id) or connector_id,
            status,
            shown,
            True,
            connector_attributes(conn, ctx),
            (get("updatedAt"), station_time),
        )
