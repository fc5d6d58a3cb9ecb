"""Canonical records shared by every stage of the pipeline.

The Avro schemas in ``schemas/avro/`` are the public contract; these pydantic models mirror
them field by field (``tests/test_schemas.py`` proves it), so Python code gets types and
validation while downstream consumers only ever need the ``.avsc`` files.

Hot paths build records with ``model_construct`` (the adapters have already coerced every
value); ``model_validate`` is for data coming from outside, e.g. decoded Avro in tests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from .vocabulary import (
    ChangeKind,
    ConnectorFormat,
    ConnectorStandard,
    EventTimeIssue,
    EventTimeSource,
    PowerType,
    Scope,
    Source,
    Status,
)

__all__ = [
    "ChangeKind",
    "ConnectorChange",
    "ConnectorFormat",
    "ConnectorStandard",
    "ConnectorStatus",
    "ConnectorSummary",
    "CountPair",
    "DeadLetter",
    "EventTimeIssue",
    "EventTimeSource",
    "EvseAvailability",
    "EvseAvailabilityWindow",
    "Model",
    "PowerType",
    "Scope",
    "Source",
    "Status",
    "construct_status",
]


class Model(BaseModel):
    """Base of every record model. Validators are built on first use, not at import: the hot
    paths construct records without validation, and a command such as ``plugstream
    normalize`` should not pay for building eight validators it never runs."""

    model_config = ConfigDict(defer_build=True)


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


#: pydantic's BaseModel keeps its instance state in four slots; construct_status fills them
#: through the slot descriptors directly (a third cheaper than ``object.__setattr__``).
_SLOTS = {name: BaseModel.__dict__[name].__set__ for name in BaseModel.__slots__}
_set_dict = _SLOTS["__dict__"]
_set_fields_set = _SLOTS["__pydantic_fields_set__"]
_set_extra = _SLOTS["__pydantic_extra__"]
_set_private = _SLOTS["__pydantic_private__"]
_ALL_STATUS_FIELDS = set(ConnectorStatus.model_fields)


def construct_status(values: dict[str, Any]) -> ConnectorStatus:
    """Build a record from already-coerced values without validation.

    Equivalent to ``ConnectorStatus.model_construct(**values)`` when ``values`` holds every
    field (the adapters' ``EvseRecords`` guarantees it), at a fraction of the cost: this runs
    once per connector on the hot path. The record keeps ``values`` itself as its
    ``__dict__``. Tests validate adapter output with ``model_validate``.
    """
    record = ConnectorStatus.__new__(ConnectorStatus)
    _set_dict(record, values)
    _set_fields_set(record, _ALL_STATUS_FIELDS)
    _set_extra(record, None)
    _set_private(record, None)
    return record
