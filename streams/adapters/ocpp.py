"""OCPP StatusNotification (1.6 and 2.0.1) → canonical connector records; the OCPP enums.

What arrives on ``raw.ocpp`` (DESIGN §2): an OCPP-J CALL frame
``[2, "<msgId>", "StatusNotification", {…}]``, the bare payload ``{…}``, a JSON array of
either, or a bridge's wrapper naming the charge point:
``{"chargePointId": "CP1", "message": [2, …]}`` (also ``chargeBoxId``/``stationId`` for the
id and ``frame``/``payload``/``data``/``body`` for the message; a wrapper may carry the
``action`` beside a bare payload).

Identity:
- the charge point id comes from the wrapper's field, else the ``ocpp-charge-point-id``
  header, else the Kafka record key (its last ``/`` segment, so a websocket path such as
  ``/ocpp/CP1`` works too);
- OCPP 1.6: one EVSE per connector, ``ocpp:<cp>:<connectorId>``, connector
  ``ocpp:<cp>:<connectorId>#<connectorId>``; ``connectorId`` 0 is the whole charge point: a
  ``CHARGE_POINT``-scope record ``ocpp:<cp>`` that the dedupe stage applies to every known
  connector of every EVSE ``ocpp:<cp>:<n>``;
- OCPP 2.0.1: EVSE ``ocpp:<cp>:<evseId>``, connector ``ocpp:<cp>:<evseId>#<connectorId>``;
  ``evseId`` 0 is the whole charge point (as above), ``connectorId`` 0 the whole EVSE (an
  EVSE-scope record).

Other actions (BootNotification, Heartbeat, MeterValues…) and CALLRESULT / CALLERROR frames
are skipped and counted as ``ocpp_other_action``. Status words follow DESIGN §3; an unknown
word maps to UNKNOWN ("anything else"). An ``errorCode`` other than ``NoError`` is kept in
``rawStatus`` (``Faulted (errorCode=OtherError)``). Event time: ``timestamp``; 1.6 makes it
optional, so a missing one falls back to the record time (``MISSING``), as do the clock-not-set
times seen in real logs (1970, 0001 → ``BEFORE_2000``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..values import norm_key
from ..vocabulary import ConnectorFormat, ConnectorStandard, Scope, Source, Status
from .base import (
    Attributes,
    EvseRecords,
    NormalizeContext,
    NormalizeResult,
    Rejection,
    clean_id,
    whole_document,
)

#: OCPP 1.6 ``ChargePointStatus``, as the specification spells it.
OCPP16_CHARGE_POINT_STATUS = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
)
#: OCPP 2.0.1 ``ConnectorStatusEnumType``.
OCPP201_CONNECTOR_STATUS = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")

#: DESIGN §3, columns "OCPP 1.6 & eDRV" and "OCPP 2.0.1", keyed by ``norm_key`` of the enum
#: members above. Anything else maps to UNKNOWN.
STATUS_TABLE: dict[str, Status] = {
    "AVAILABLE": Status.AVAILABLE,
    "PREPARING": Status.CHARGING,
    "CHARGING": Status.CHARGING,
    "SUSPENDEDEVSE": Status.CHARGING,
    "SUSPENDEDEV": Status.CHARGING,
    "FINISHING": Status.CHARGING,
    "OCCUPIED": Status.CHARGING,
    "RESERVED": Status.RESERVED,
    "UNAVAILABLE": Status.INOPERATIVE,
    "FAULTED": Status.OUTOFORDER,
}

#: OCPP 2.0.1 ``ConnectorEnumType`` (FINAL schema), the members OCPP libraries also accept in
#: 2.0.1 (``cChaoJi``, ``cGBT``, ``OppCharge``) and the OCPP 2.1 additions.
OCPP_CONNECTOR_TYPES = (
    "cCCS1",
    "cCCS2",
    "cG105",
    "cTesla",
    "cType1",
    "cType2",
    "s309-1P-16A",
    "s309-1P-32A",
    "s309-3P-16A",
    "s309-3P-32A",
    "sBS1361",
    "sCEE-7-7",
    "sType2",
    "sType3",
    "Other1PhMax16A",
    "Other1PhOver16A",
    "Other3Ph",
    "Pan",
    "wInductive",
    "wResonant",
    "Undetermined",
    "Unknown",
    "cChaoJi",
    "cGBT",
    "OppCharge",
    "cGBT-DC",
    "cLECCS",
    "cMCS",
    "cNACS",
    "cUltraChaoJi",
)

S = ConnectorStandard
F = ConnectorFormat
#: ``ConnectorEnumType`` member → (OCPI standard, format); ``(None, None)`` where OCPI 2.2.1
#: has no equivalent (a known type, so no warning). ``c…`` = captive cable, ``s…`` = socket.
CONNECTOR_TYPE_TABLE: dict[str, tuple[ConnectorStandard | None, ConnectorFormat | None]] = {
    "cCCS1": (S.IEC_62196_T1_COMBO, F.CABLE),
    "cCCS2": (S.IEC_62196_T2_COMBO, F.CABLE),
    "cG105": (S.CHADEMO, F.CABLE),
    "cTesla": (S.TESLA_S, F.CABLE),
    "cType1": (S.IEC_62196_T1, F.CABLE),
    "cType2": (S.IEC_62196_T2, F.CABLE),
    "s309-1P-16A": (S.IEC_60309_2_single_16, F.SOCKET),
    "s309-1P-32A": (None, F.SOCKET),  # OCPI has no single-phase 32 A IEC 60309
    "s309-3P-16A": (S.IEC_60309_2_three_16, F.SOCKET),
    "s309-3P-32A": (S.IEC_60309_2_three_32, F.SOCKET),
    "sBS1361": (S.DOMESTIC_G, F.SOCKET),  # the UK 13 A domestic socket
    "sCEE-7-7": (S.DOMESTIC_F, F.SOCKET),
    "sType2": (S.IEC_62196_T2, F.SOCKET),
    "sType3": (S.IEC_62196_T3C, F.SOCKET),
    "Other1PhMax16A": (None, None),
    "Other1PhOver16A": (None, None),
    "Other3Ph": (None, None),
    "Pan": (S.PANTOGRAPH_TOP_DOWN, None),
    "wInductive": (None, None),
    "wResonant": (None, None),
    "Undetermined": (None, None),
    "Unknown": (None, None),
    "cChaoJi": (S.CHAOJI, F.CABLE),
    "cGBT": (S.GBT_DC, F.CABLE),
    "OppCharge": (S.PANTOGRAPH_TOP_DOWN, None),
    "cGBT-DC": (S.GBT_DC, F.CABLE),
    "cLECCS": (None, F.CABLE),
    "cMCS": (None, F.CABLE),
    "cNACS": (S.TESLA_S, F.CABLE),  # NACS (SAE J3400) is the Tesla connector
    "cUltraChaoJi": (S.CHAOJI, F.CABLE),
}
CONNECTOR_TYPES: dict[str, tuple[ConnectorStandard | None, ConnectorFormat | None]] = {
    norm_key(name): value for name, value in CONNECTOR_TYPE_TABLE.items()
}

#: Wrapper fields a bridge may use for the charge point id and for the OCPP message.
_ID_FIELDS = ("chargePointId", "chargeBoxId", "stationId", "charge_point_id")
_BODY_FIELDS = ("message", "frame", "payload", "data", "body")
_CALL, _CALLRESULT, _CALLERROR = 2, 3, 4
_MAX_ID = 1_000_000  # evseId/connectorId beyond this are not ids but garbage
_NO_ATTRIBUTES = Attributes()


def map_status(raw: Any) -> Status:
    if not isinstance(raw, str):
        raise Rejection("wrong_type", f"OCPP status must be a string, got {type(raw).__name__}")
    return STATUS_TABLE.get(norm_key(raw), Status.UNKNOWN)


def _number(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if value is None:
        raise Rejection("missing_id", f"StatusNotification has no {name}")
    if value.__class__ is str and value.strip().isdigit() and value.strip().isascii():
        value = int(value.strip())  # some bridges stringify numbers
    if value.__class__ is not int or not 0 <= value <= _MAX_ID:
        raise Rejection("invalid_id", f"{name} must be a whole number from 0, got {value!r:.40}")
    return value


def charge_point_from_record(ctx: NormalizeContext) -> str | None:
    """The charge point id the Kafka record names: the ``ocpp-charge-point-id`` header, else
    the key's last ``/`` segment."""
    header = ctx.header("ocpp-charge-point-id")
    if header is not None and header.strip():
        return clean_id(header, "ocpp-charge-point-id header")
    key = ctx.key_text()
    if key is None:
        return None
    return clean_id(key.rstrip("/").rsplit("/", 1)[-1], "record key (charge point id)")


class OcppAdapter:
    source: ClassVar[Source] = Source.ocpp

    @whole_document
    def normalize(self, document: Any, ctx: NormalizeContext) -> NormalizeResult:
        result = NormalizeResult()
        if isinstance(document, list) and document and isinstance(document[0], list | dict):
            for index, item in enumerate(document):  # a batch of frames / payloads / wrappers
                try:
                    self._message(item, None, ctx, result)
                except Rejection as rejection:
                    result.rejections.append(rejection.at(f"[{index}]"))
            return result
        self._message(document, None, ctx, result)
        return result

    def _message(self, message: Any, action: Any, ctx: NormalizeContext, result: NormalizeResult) -> None:
        charge_point = None
        if isinstance(message, dict):
            wrapped_id = next((message[name] for name in _ID_FIELDS if message.get(name) is not None), None)
            body = next((message[name] for name in _BODY_FIELDS if name in message), None)
            if wrapped_id is not None or body is not None:
                charge_point = clean_id(wrapped_id, "chargePointId")
                if body is None:
                    raise Rejection("unrecognized_document", "OCPP wrapper holds no message/payload")
                action = message.get("action", action)
                message = body
        if isinstance(message, list):
            if not message or message[0].__class__ is not int:
                raise Rejection("unrecognized_document", "not an OCPP-J frame ([2, id, action, payload])")
            kind = message[0]
            if kind in (_CALLRESULT, _CALLERROR):
                result.skip("ocpp_other_action")
                return
            if kind != _CALL or len(message) != 4:
                raise Rejection("unrecognized_document", f"not an OCPP-J CALL frame (message type {kind})")
            action, message = message[2], message[3]
        if action is not None:
            if not isinstance(action, str):
                raise Rejection("wrong_type", f"OCPP action must be a string, got {type(action).__name__}")
            if norm_key(action) != "STATUSNOTIFICATION":
                result.skip("ocpp_other_action")
                return
        if not isinstance(message, dict):
            raise Rejection(
                "not_an_object", f"StatusNotification payload must be an object, got {type(message).__name__}"
            )
        if charge_point is None:
            charge_point = charge_point_from_record(ctx)
        if charge_point is None:
            raise Rejection(
                "missing_id",
                "no charge point id: set the record key, an ocpp-charge-point-id header or a chargePointId field",
            )
        self._status_notification(message, charge_point, ctx, result)

    def _status_notification(
        self, payload: dict[str, Any], charge_point: str, ctx: NormalizeContext, result: NormalizeResult
    ) -> None:
        station = f"ocpp:{charge_point}"
        if "connectorStatus" in payload or "evseId" in payload:  # OCPP 2.0.1
            raw_status = payload.get("connectorStatus")
            evse_id, connector_id = _number(payload, "evseId"), _number(payload, "connectorId")
            shown_id = f"{evse_id}/{connector_id}"
        else:  # OCPP 1.6
            raw_status = payload.get("status")
            connector_id = _number(payload, "connectorId")
            evse_id, shown_id = connector_id, str(connector_id)
        if raw_status is None:
            raise Rejection("missing_status", f"StatusNotification for {station} {shown_id} has no status")
        status = map_status(raw_status)
        shown = raw_status.strip()
        error = payload.get("errorCode")
        if isinstance(error, str) and error.strip() and norm_key(error) != "NOERROR":
            shown = f"{shown} (errorCode={error.strip()[:50]})"
        times = (payload.get("timestamp"),)
        if evse_id == 0:
            out = EvseRecords(Source.ocpp, station, ctx, locationId=station)
            out.add(f"{station}#*", None, status, shown, True, _NO_ATTRIBUTES, times, Scope.CHARGE_POINT)
        else:
            evse_uid = f"{station}:{evse_id}"
            out = EvseRecords(Source.ocpp, evse_uid, ctx, locationId=station, evseDisplayId=f"{charge_point}/{evse_id}")
            if connector_id == 0:  # 2.0.1: the whole EVSE
                out.add(f"{evse_uid}#*", None, status, shown, True, _NO_ATTRIBUTES, times, Scope.EVSE)
            else:
                out.add(f"{evse_uid}#{connector_id}", str(connector_id), status, shown, True, _NO_ATTRIBUTES, times)
        result.records.extend(out.records)
