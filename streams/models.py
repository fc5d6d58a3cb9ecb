"""Canonical records shared by every stage of the pipeline.

The Avro schemas in ``schemas/avro/`` are the public contract; these pydantic models mirror
them field by field (``tests/test_schemas.py`` proves it), so Python code gets types and
validation while downstream consumers only ever need the ``.avsc`` files.

Hot paths build records with ``model_construct`` (the adapters have already coerced every
value); ``model_validate`` is for data coming from outside, e.g. decoded Avro in tests.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Base of every record model. Validators are built on first use, not at import: the hot
    paths construct records without validation, and a command such as ``plugstream
    normalize`` should not pay for building eight validators it never runs."""

    model_config = ConfigDict(defer_build=True)


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


class ConnectorStatus(Model):
    """One connector's status as reported by one source document (Avro ``ConnectorStatus``)."""

    model_config = ConfigDict(extra="forbid", frozen=False, defer_build=True)

    source: Source
    connectorUid: str
    evseUid: str
    scope: Scope = Scope.CONNECTOR
    connectorId: str | None = None
    locationId: str | None = None
    evseDisplayId: str | None = None
    status: Status
    rawStatus: str | None = None
    live: bool
    standard: ConnectorStandard | None = None
    format: ConnectorFormat | None = None
    powerType: PowerType | None = None
    maxPowerKw: float | None = None
    voltage: int | None = None
    amperage: int | None = None
    powerClass: int | None = None
    eventTime: datetime
    eventTimeSource: EventTimeSource
    eventTimeIssue: EventTimeIssue | None = None
    recordTime: datetime
    latitude: float | None = None
    longitude: float | None = None
    locationName: str | None = None
    operatorName: str | None = None
    city: str | None = None
    countryCode: str | None = None
    reliability: float | None = None
    uptime: float | None = None
    privilegeStatus: str | None = None
    snapshotConnectorUids: list[str] | None = None


class ChangeKind(StrEnum):
    NEW = "NEW"
    STATUS = "STATUS"
    ATTRIBUTES = "ATTRIBUTES"
    REMOVED_BY_SNAPSHOT = "REMOVED_BY_SNAPSHOT"


class ConnectorChange(Model):
    """A real change after dedupe (Avro ``ConnectorChange``, topic ``connector-changes``)."""

    connectorUid: str
    evseUid: str
    source: Source
    changeKind: ChangeKind
    status: Status
    previousStatus: Status | None = None
    rawStatus: str | None = None
    connectorId: str | None = None
    live: bool
    standard: ConnectorStandard | None = None
    format: ConnectorFormat | None = None
    powerType: PowerType | None = None
    maxPowerKw: float | None = None
    voltage: int | None = None
    amperage: int | None = None
    powerClass: int | None = None
    eventTime: datetime
    previousEventTime: datetime | None = None
    recordTime: datetime


class CountPair(Model):
    total: int
    available: int


class ConnectorSummary(Model):
    connectorUid: str
    connectorId: str | None = None
    status: Status
    rawStatus: str | None = None
    live: bool
    standard: ConnectorStandard | None = None
    powerClass: int | None = None
    maxPowerKw: float | None = None
    lastChangeTimestamp: datetime
    lastSeenTimestamp: datetime


class EvseAvailability(Model):
    """Latest availability of one EVSE (Avro ``EvseAvailability``, topic ``evse-availability``)."""

    evseUid: str
    source: Source
    locationId: str | None = None
    evseDisplayId: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    locationName: str | None = None
    operatorName: str | None = None
    city: str | None = None
    countryCode: str | None = None
    statusCounts: dict[str, int]
    connectorsTotal: int
    available: int
    byStandard: dict[str, CountPair]
    byPowerClass: dict[str, CountPair]
    maxAvailablePowerKw: float | None = None
    lastUpdateTimestamp: datetime | None = None
    lastSeenTimestamp: datetime | None = None
    stale: bool
    streamTime: datetime | None = None
    connectors: list[ConnectorSummary]


class EvseAvailabilityWindow(Model):
    """One closed window (Avro ``EvseAvailabilityWindow``, topic ``evse-availability-windowed``)."""

    evseUid: str
    source: Source
    windowStart: datetime
    windowEnd: datetime
    statusCounts: dict[str, int]
    connectorsTotal: int
    available: int
    minAvailable: int
    maxAvailable: int
    changes: int
    lastUpdateTimestamp: datetime | None = None
    availableShare: float | None = None


class DeadLetter(Model):
    """A rejected raw record or part of one (Avro ``DeadLetter``, topic ``plugstream.dlq``)."""

    source: str | None = None
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None = None
    key: bytes | None = None
    payload: bytes
    errorKind: str
    errorMessage: str
    path: str | None = None
    stage: str
