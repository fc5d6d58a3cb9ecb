"""The enum vocabularies of the canonical records (the Avro enums of ``schemas/avro/``).

They live apart from the pydantic models (:mod:`streams.models`, which re-exports them) so
that code needing only the vocabulary — the adapters, and so ``plugstream normalize``, which
writes plain field dicts — starts without importing pydantic (about 0.1 s of start-up).
"""

from __future__ import annotations

from enum import StrEnum


class Source(StrEnum):
    """Where a record came from; also the suffix of its raw topic (``raw.<source>``)."""

    ocpi = "ocpi"
    ocm = "ocm"
    here = "here"
    edrv = "edrv"
    ocpp = "ocpp"


class Status(StrEnum):
    """Canonical connector status, the OCPI 2.2.1 vocabulary (DESIGN §3)."""

    AVAILABLE = "AVAILABLE"
    BLOCKED = "BLOCKED"
    CHARGING = "CHARGING"
    INOPERATIVE = "INOPERATIVE"
    OUTOFORDER = "OUTOFORDER"
    PLANNED = "PLANNED"
    REMOVED = "REMOVED"
    RESERVED = "RESERVED"
    UNKNOWN = "UNKNOWN"


class Scope(StrEnum):
    """What a status record is about.

    ``CONNECTOR``: one physical connector. ``EVSE``: the source spoke about a whole EVSE
    without naming connectors (an OCPI PATCH carrying only ``status``, or a full EVSE
    snapshot that lists no connectors). The dedupe stage applies an EVSE-scope record to
    every connector it knows for that EVSE; its ``connectorUid`` is ``<evseUid>#*``.
    ``CHARGE_POINT``: an OCPP StatusNotification about the whole charge point (1.6
    ``connectorId`` 0, 2.0.1 ``evseId`` 0). Its ``evseUid`` is ``ocpp:<chargePointId>`` and
    it applies like an EVSE-scope record to every EVSE ``ocpp:<chargePointId>:<n>`` known.
    """

    CONNECTOR = "CONNECTOR"
    EVSE = "EVSE"
    CHARGE_POINT = "CHARGE_POINT"


class ConnectorStandard(StrEnum):
    """OCPI 2.2.1 ConnectorType vocabulary (mixed case is part of the official values)."""

    CHADEMO = "CHADEMO"
    CHAOJI = "CHAOJI"
    DOMESTIC_A = "DOMESTIC_A"
    DOMESTIC_B = "DOMESTIC_B"
    DOMESTIC_C = "DOMESTIC_C"
    DOMESTIC_D = "DOMESTIC_D"
    DOMESTIC_E = "DOMESTIC_E"
    DOMESTIC_F = "DOMESTIC_F"
    DOMESTIC_G = "DOMESTIC_G"
    DOMESTIC_H = "DOMESTIC_H"
    DOMESTIC_I = "DOMESTIC_I"
    DOMESTIC_J = "DOMESTIC_J"
    DOMESTIC_K = "DOMESTIC_K"
    DOMESTIC_L = "DOMESTIC_L"
    DOMESTIC_M = "DOMESTIC_M"
    DOMESTIC_N = "DOMESTIC_N"
    DOMESTIC_O = "DOMESTIC_O"
    GBT_AC = "GBT_AC"
    GBT_DC = "GBT_DC"
    IEC_60309_2_single_16 = "IEC_60309_2_single_16"
    IEC_60309_2_three_16 = "IEC_60309_2_three_16"
    IEC_60309_2_three_32 = "IEC_60309_2_three_32"
    IEC_60309_2_three_64 = "IEC_60309_2_three_64"
    IEC_62196_T1 = "IEC_62196_T1"
    IEC_62196_T1_COMBO = "IEC_62196_T1_COMBO"
    IEC_62196_T2 = "IEC_62196_T2"
    IEC_62196_T2_COMBO = "IEC_62196_T2_COMBO"
    IEC_62196_T3A = "IEC_62196_T3A"
    IEC_62196_T3C = "IEC_62196_T3C"
    NEMA_5_20 = "NEMA_5_20"
    NEMA_6_30 = "NEMA_6_30"
    NEMA_6_50 = "NEMA_6_50"
    NEMA_10_30 = "NEMA_10_30"
    NEMA_10_50 = "NEMA_10_50"
    NEMA_14_30 = "NEMA_14_30"
    NEMA_14_50 = "NEMA_14_50"
    PANTOGRAPH_BOTTOM_UP = "PANTOGRAPH_BOTTOM_UP"
    PANTOGRAPH_TOP_DOWN = "PANTOGRAPH_TOP_DOWN"
    TESLA_R = "TESLA_R"
    TESLA_S = "TESLA_S"


class ConnectorFormat(StrEnum):
    SOCKET = "SOCKET"
    CABLE = "CABLE"


class PowerType(StrEnum):
    AC_1_PHASE = "AC_1_PHASE"
    AC_2_PHASE = "AC_2_PHASE"
    AC_2_PHASE_SPLIT = "AC_2_PHASE_SPLIT"
    AC_3_PHASE = "AC_3_PHASE"
    DC = "DC"


class EventTimeSource(StrEnum):
    """``SOURCE``: the payload's own time was trusted. ``RECORD``: the Kafka record
    timestamp was used instead (see ``eventTimeIssue`` for why)."""

    SOURCE = "SOURCE"
    RECORD = "RECORD"


class EventTimeIssue(StrEnum):
    """Why the payload's time was not used (DESIGN §3)."""

    MISSING = "MISSING"
    UNPARSEABLE = "UNPARSEABLE"
    BEFORE_2000 = "BEFORE_2000"
    AFTER_RECORD_TIME = "AFTER_RECORD_TIME"


class ChangeKind(StrEnum):
    NEW = "NEW"
    STATUS = "STATUS"
    ATTRIBUTES = "ATTRIBUTES"
    REMOVED_BY_SNAPSHOT = "REMOVED_BY_SNAPSHOT"
