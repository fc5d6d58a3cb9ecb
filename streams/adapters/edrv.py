"""eDRV CSMS Connector Object / charge-station object → canonical connector records.

Decisions DESIGN.md left open (also in the README):
- A Connector Object names its charge station as ``chargestation`` (an id or an object with
  ``_id``; ``chargestation_id``/``chargeStation`` also read). One that names none — the v1.0
  docs example carries only ``endpoint``/``organization`` — is its own EVSE (DESIGN §2):
  ``evseUid`` = ``edrv:<_id>``, the same string as its ``connectorUid``, and a warning
  ``edrv_connector_without_station`` is counted.
- A charge-station object's embedded ``connectors[]`` is a full snapshot of the station.
  One that lists connector ids only (v1.0 ``evses: [ids]``) carries no status: skipped.
- ``active=false`` → INOPERATIVE (DESIGN). A station reported ``online=false`` makes its
  connectors UNKNOWN — the OCPI convention for offline (DESIGN is silent for eDRV).
- Status words are OCPP 1.6 ``ChargePointStatus`` / 2.0.1 ``ConnectorStatusEnumType`` in any
  case (the tables live in ``streams/adapters/ocpp.py``); anything else → UNKNOWN. ``type`` is
  eDRV's own vocabulary or an OCPP ``ConnectorEnumType`` member.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
from ..vocabulary import ConnectorFormat, ConnectorStandard, Source, Status
from . import ocpp
from .base import (
    AttributeCache,
    Attributes,
    EvseRecords,
    NormalizeContext,
    NormalizeResult,
    Rejection,
    clean_id,
    list_field,
    whole_document,
)

#: DESIGN §3, column "OCPP 1.6 & eDRV": the OCPP status table. Anything else maps to UNKNOWN.
STATUS_TABLE: dict[str, Status] = ocpp.STATUS_TABLE

S = ConnectorStandard
F = ConnectorFormat
#: eDRV's own ``type`` names (v1.0 and v1.1 docs) → (standard, format).
EDRV_CONNECTOR_TYPES: dict[str, tuple[ConnectorStandard | None, ConnectorFormat | None]] = {
    "CCS1": (S.IEC_62196_T1_COMBO, F.CABLE),
    "CCS2": (S.IEC_62196_T2_COMBO, F.CABLE),
    "G105": (S.CHADEMO, F.CABLE),
    "CHADEMO": (S.CHADEMO, F.CABLE),
    "Tesla": (S.TESLA_S, F.CABLE),
    "J1772": (S.IEC_62196_T1, None),
    "Type1": (S.IEC_62196_T1, None),
    "Type2": (S.IEC_62196_T2, None),
}
#: Every ``type`` this adapter knows: eDRV's names and every OCPP ``ConnectorEnumType`` member.
CONNECTOR_TYPES: dict[str, tuple[ConnectorStandard | None, ConnectorFormat | None]] = {
    **ocpp.CONNECTOR_TYPES,
    **{norm_key(name): value for name, value in EDRV_CONNECTOR_TYPES.items()},
}

map_status = ocpp.map_status


def _ref_id(value: Any, what: str) -> str | None:
    """An id given directly or as an embedded object with ``_id``."""
    if isinstance(value, dict):
        value = value.get("_id")
    return clean_id(value, what)


def parse_attributes(key: tuple[Any, ...], warnings: Warnings) -> Attributes:
    raw_type, raw_format, raw_power_type, raw_power = key
    warn = warnings.check
    standard, fmt = None, None
    if isinstance(raw_type, str):
        known = CONNECTOR_TYPES.get(norm_key(raw_type))
        if known is not None:  # a known type, possibly one OCPI has no equivalent for
            standard, fmt = known
        else:
            standard = warn("standard", raw_type, standard_from_text(raw_type))
    else:
        warn("standard", raw_type, None)
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

    @whole_document
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
        station_ref = doc.get("chargestation") or doc.get("chargestation_id") or doc.get("chargeStation")
        station_id = _ref_id(station_ref, "eDRV chargestation id")
        if station_id is None:
            connector_id = clean_id(doc.get("_id"), "eDRV connector _id")
            if connector_id is None:
                raise Rejection("missing_id", "eDRV connector has no _id and no chargestation")
            # DESIGN §2: a Connector Object naming no charge station is its own EVSE
            ctx.warnings.bump("edrv_connector_without_station")
            evse_uid = f"edrv:{connector_id}"
        else:
            evse_uid = f"edrv:{station_id}"
        out = EvseRecords(Source.edrv, evse_uid, ctx, evseDisplayId=clean_str(doc.get("endpoint")))
        self._connector(doc, out, None, None, ctx, result)
        result.records.extend(out.records)

    def _station(self, station: dict[str, Any], ctx: NormalizeContext, result: NormalizeResult) -> None:
        station_id = clean_id(station.get("_id"), "eDRV charge station _id")
        if station_id is None:
            kind = "missing_id" if station.get("_id") is None else "invalid_id"
            raise Rejection(kind, "eDRV charge station has no usable _id")
        evse_uid = f"edrv:{station_id}"
        coords = station.get("coordinates")
        lat = lon = None
        if isinstance(coords, list) and len(coords) == 2:
            lat, lon = coordinate_pair(coords[1], coords[0], ctx.warnings)  # GeoJSON order: [lon, lat]
        location = clean_id(station.get("location"), "eDRV location id")
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
        if connectors and len(connectors) > ctx.max_connectors:
            ctx.expect(len(connectors))
        if not connectors or all(c.__class__ is not dict for c in connectors):
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
        connector_id = clean_id(get("_id"), "eDRV connector _id")
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
