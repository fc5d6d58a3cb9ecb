"""The adapter protocol, the typed rejection, and helpers every adapter shares.

Contract: ``adapter.normalize(document, ctx)`` returns a :class:`NormalizeResult` or raises
:class:`Rejection` — never any other exception (pinned by property tests). A document that
holds many EVSEs (an OCPI Location, an OCM POI list) keeps its good parts: each unreadable
part becomes a partial :class:`Rejection` in ``result.rejections`` with a ``path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

import orjson

from ..models import (
    ConnectorFormat,
    ConnectorStandard,
    ConnectorStatus,
    PowerType,
    Scope,
    Source,
    Status,
)
from ..timeparse import resolve_event_time
from ..values import Warnings, power_class

DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576


class Rejection(Exception):
    """Why a document (or part of one) cannot become canonical records.

    ``kind`` is a stable, machine-readable word (it is the DLQ ``errorKind``);
    ``message`` is for humans; ``path`` locates the part of the document, if partial.
    """

    KINDS: ClassVar[frozenset[str]] = frozenset(
        {
            "oversized",
            "not_utf8",
            "malformed_json",
            "malformed_avro",
            "not_an_object",
            "missing_id",
            "invalid_id",
            "missing_status",
            "unknown_status",
            "wrong_type",
            "absurd_value",
            "unrecognized_document",
            "internal_error",
        }
    )

    def __init__(self, kind: str, message: str, path: str = "") -> None:
        assert kind in self.KINDS, kind
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.path = path

    def at(self, path: str) -> Rejection:
        """The same rejection located under ``path`` (innermost path wins)."""
        return Rejection(self.kind, self.message, self.path or path)

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message, "path": self.path}


@dataclass(slots=True)
class NormalizeContext:
    """Per-document inputs that are not in the payload: the Kafka record time and policy."""

    record_time: datetime
    max_skew: timedelta = timedelta(minutes=5)
    warnings: Warnings = field(default_factory=Warnings)
    trust_until: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.trust_until = self.record_time + self.max_skew


@dataclass(slots=True)
class NormalizeResult:
    records: list[ConnectorStatus] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def extend(self, other: NormalizeResult) -> None:
        self.records.extend(other.records)
        self.rejections.extend(other.rejections)
        for reason, count in other.skipped.items():
            self.skip(reason, count)


class SourceAdapter(Protocol):
    """One module per source implements this (see ``streams/adapters/__init__.py``)."""

    source: ClassVar[Source]

    def normalize(self, document: Any, ctx: NormalizeContext) -> NormalizeResult: ...


def decode_payload(raw: bytes, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Any:
    """Bytes from a raw topic → JSON value, checking size before parsing (DESIGN §6)."""
    if len(raw) > max_bytes:
        raise Rejection("oversized", f"payload is {len(raw)} bytes, limit is {max_bytes}")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise Rejection("not_utf8", f"payload is not UTF-8: {uexc.reason} at byte {uexc.start}") from None
        raise Rejection("malformed_json", str(exc)) from None


def require_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Rejection("not_an_object", f"{what} must be a JSON object, got {_type_name(value)}")
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def list_field(container: dict[str, Any], key: str, what: str) -> list[Any] | None:
    """A list-valued field, or ``None`` when absent/null; another type rejects."""
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise Rejection("wrong_type", f"{what} must be a list, got {_type_name(value)}")
    return value


def unwrap_list(value: Any, inner_key: str, what: str) -> list[Any] | None:
    """HERE v2 wraps lists (``{"connector": [...]}``); accept wrapped and plain lists."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get(inner_key)
        if value is None:
            return []
        if isinstance(value, dict):  # a single wrapped element
            return [value]
    if not isinstance(value, list):
        raise Rejection("wrong_type", f"{what} must be a list, got {_type_name(value)}")
    return value


@dataclass(slots=True)
class Attributes:
    """Canonical connector attributes; built by adapters, shared by all connectors of a group.

    Treated as immutable once built: :meth:`fields` computes the record fields once, and
    ``AttributeCache`` hands the same instance to every connector with the same spec.
    """

    standard: ConnectorStandard | None = None
    format: ConnectorFormat | None = None
    powerType: PowerType | None = None
    maxPowerKw: float | None = None
    voltage: int | None = None
    amperage: int | None = None
    powerClass: int | None = None
    _fields: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def fields(self) -> dict[str, Any]:
        """The record fields these attributes set; ``powerClass`` follows ``maxPowerKw`` when known."""
        fields = self._fields
        if fields is None:
            klass = self.powerClass if self.maxPowerKw is None else power_class(self.maxPowerKw)
            fields = self._fields = {
                "standard": self.standard,
                "format": self.format,
                "powerType": self.powerType,
                "maxPowerKw": self.maxPowerKw,
                "voltage": self.voltage,
                "amperage": self.amperage,
                "powerClass": klass,
            }
        return fields


@dataclass(slots=True)
class Place:
    """Where an EVSE is and what it is called; shared by all its connectors (immutable once built)."""

    locationId: str | None = None
    evseDisplayId: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    locationName: str | None = None
    operatorName: str | None = None
    city: str | None = None
    countryCode: str | None = None
    _fields: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def fields(self) -> dict[str, Any]:
        fields = self._fields
        if fields is None:
            fields = self._fields = {
                "locationId": self.locationId,
                "evseDisplayId": self.evseDisplayId,
                "latitude": self.latitude,
                "longitude": self.longitude,
                "locationName": self.locationName,
                "operatorName": self.operatorName,
                "city": self.city,
                "countryCode": self.countryCode,
            }
        return fields


#: Every ConnectorStatus field in schema order; ``build_record`` copies it and fills it in,
#: so records keep one key order whatever the adapter.
_RECORD_TEMPLATE: dict[str, Any] = dict.fromkeys(ConnectorStatus.model_fields)


def build_record(
    *,
    source: Source,
    connector_uid: str,
    evse_uid: str,
    connector_id: str | None,
    status: Status,
    raw_status: str | None,
    live: bool,
    attributes: Attributes,
    place: Place,
    time_candidates: tuple[Any, ...],
    ctx: NormalizeContext,
    scope: Scope = Scope.CONNECTOR,
    reliability: float | None = None,
    uptime: float | None = None,
    privilege_status: str | None = None,
) -> ConnectorStatus:
    """Assemble one canonical record; the only place that knows the field list.

    Runs once per connector, so it copies a template and merges the cached place and
    attribute fields instead of spelling out every field each time.
    """
    event_time, time_source, time_issue = resolve_event_time(time_candidates, ctx.record_time, ctx.trust_until)
    values = _RECORD_TEMPLATE.copy()
    values.update(place.fields())
    values.update(attributes.fields())
    values["source"] = source
    values["connectorUid"] = connector_uid
    values["evseUid"] = evse_uid
    values["scope"] = scope
    values["connectorId"] = connector_id
    values["status"] = status
    values["rawStatus"] = raw_status
    values["live"] = live
    values["eventTime"] = event_time
    values["eventTimeSource"] = time_source
    values["eventTimeIssue"] = time_issue
    values["recordTime"] = ctx.record_time
    if reliability is not None:
        values["reliability"] = reliability
    if uptime is not None:
        values["uptime"] = uptime
    if privilege_status is not None:
        values["privilegeStatus"] = privilege_status
    return construct_status(values)


_ALL_FIELDS = set(ConnectorStatus.model_fields)
_set = object.__setattr__


def construct_status(values: dict[str, Any]) -> ConnectorStatus:
    """Build a record from already-coerced values without validation.

    Equivalent to ``ConnectorStatus.model_construct(**values)`` when ``values`` holds every
    field (``build_record`` guarantees it), at a fraction of the cost: this runs once per
    connector on the hot path. Tests validate adapter output with ``model_validate``.
    """
    record = ConnectorStatus.__new__(ConnectorStatus)
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", _ALL_FIELDS)
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


class AttributeCache:
    """Memoizes attribute parsing per raw connector spec.

    Feeds repeat the same few connector specs (standard, format, power …) endlessly, so the
    parse runs once per distinct spec. Warnings raised by the parse are replayed on every
    hit so counters stay exact. Unhashable keys (garbage input) bypass the cache.
    """

    __slots__ = ("_compute", "_entries", "_limit")

    def __init__(self, compute: Any, limit: int = 4096) -> None:
        self._compute = compute
        self._entries: dict[Any, tuple[Attributes, tuple[tuple[str, int], ...]]] = {}
        self._limit = limit

    def get(self, key: tuple[Any, ...], ctx: NormalizeContext) -> Attributes:
        cache_key: tuple[Any, ...] = key
        for value in key:
            if value.__class__ is bool:  # True == 1 would alias a numeric key: tag booleans
                cache_key = tuple((bool, v) if v.__class__ is bool else v for v in key)
                break
        try:
            entry = self._entries.get(cache_key)
        except TypeError:  # unhashable garbage (a list where a number belongs)
            return self._compute(key, ctx.warnings)
        if entry is None:
            probe = Warnings()
            entry = (self._compute(key, probe), tuple(probe.counts.items()))
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[cache_key] = entry
        for name, count in entry[1]:
            ctx.warnings.counts[name] = ctx.warnings.counts.get(name, 0) + count
        return entry[0]


def mark_snapshot(records: list[ConnectorStatus], evse_uid: str) -> None:
    """Stamp every record of one EVSE snapshot with the full list of connectors it listed.

    The dedupe stage marks connectors it knew for this EVSE but that are missing from the
    list as REMOVED at the snapshot's event time (DESIGN §4).
    """
    listed = sorted({r.connectorUid for r in records if r.scope is Scope.CONNECTOR})
    for record in records:
        if record.evseUid == evse_uid:
            record.__dict__["snapshotConnectorUids"] = listed
