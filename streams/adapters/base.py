"""The adapter protocol, the typed rejection, and helpers every adapter shares.

Contract: ``adapter.normalize(document, ctx)`` returns a :class:`NormalizeResult` or raises
:class:`Rejection` — never any other exception (pinned by property tests). A document that
holds many EVSEs (an OCPI Location, an OCM POI list) keeps its good parts: each unreadable
part becomes a partial :class:`Rejection` in ``result.rejections`` with a ``path``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import orjson

from ..timeparse import resolve_event_time
from ..values import Warnings, power_class
from ..vocabulary import (
    ConnectorFormat,
    ConnectorStandard,
    EventTimeIssue,
    EventTimeSource,
    PowerType,
    Scope,
    Source,
    Status,
)

if TYPE_CHECKING:
    from ..models import ConnectorStatus

DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576
#: Records one document may expand to (``PLUGSTREAM_MAX_CONNECTORS_PER_DOCUMENT``).
DEFAULT_MAX_CONNECTORS = 1_000
#: Identifiers longer than this, or holding control characters, are rejected (``invalid_id``).
MAX_ID_LENGTH = 256


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


class WholeDocumentRejected(Exception):
    """Carries a :class:`Rejection` that applies to the whole document (the connector budget
    ran out). Deliberately not a ``Rejection``: the per-part handlers of multi-part documents
    catch ``Rejection`` and must not turn this into a partial rejection."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection))
        self.rejection = rejection


_Adapter = TypeVar("_Adapter")


def whole_document(
    normalize: Callable[[_Adapter, Any, NormalizeContext], NormalizeResult],
) -> Callable[[_Adapter, Any, NormalizeContext], NormalizeResult]:
    """Decorator for ``adapter.normalize``: a whole-document rejection raised anywhere inside
    becomes the document's :class:`Rejection` (the protocol raises nothing else)."""

    @functools.wraps(normalize)
    def wrapper(self: _Adapter, document: Any, ctx: NormalizeContext) -> NormalizeResult:
        try:
            return normalize(self, document, ctx)
        except WholeDocumentRejected as exc:
            raise exc.rejection from None

    return wrapper


def clean_id(value: Any, what: str) -> str | None:
    """An identifier as text: numbers become text, surrounding blanks go.

    ``None`` when absent (null or blank). Present but unusable — longer than
    :data:`MAX_ID_LENGTH`, holding control or other non-printable characters, not text or a
    whole number — is a rejection (``invalid_id``): an id is part of a record's identity, so
    it is never silently dropped or mangled.
    """
    if value.__class__ is str:  # the common case first: this runs for every connector
        text = value.strip()
        if not text:
            return None
        if len(text) <= MAX_ID_LENGTH and text.isprintable():
            return text
        if len(text) > MAX_ID_LENGTH:
            raise Rejection("invalid_id", f"{what} is {len(text)} characters long, the limit is {MAX_ID_LENGTH}")
        raise Rejection("invalid_id", f"{what} {text[:40]!r} contains control or non-printable characters")
    if value is None:
        return None
    if value.__class__ is int:
        if -(10**18) < value < 10**18:
            return str(value)
        raise Rejection("invalid_id", f"{what} {value} is out of range")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, str):  # a str subclass
        return clean_id(str(value), what)
    raise Rejection("invalid_id", f"{what} must be text or a whole number, got {_type_name(value)}")


_FIVE_MINUTES = timedelta(minutes=5)
#: (event time, where it came from, why the source's own time was not used)
ResolvedTime = tuple[datetime, EventTimeSource, EventTimeIssue | None]
#: Turns one record's field dict (every field of :data:`CONNECTOR_STATUS_FIELDS`) into the
#: record the adapters return, keeping that very dict as the record's fields (a snapshot's
#: first record is stamped through it afterwards, see :meth:`EvseRecords.mark_snapshot`).
RecordBuilder = Callable[[dict[str, Any]], Any]


def status_records() -> RecordBuilder:
    """The default builder: pydantic ``ConnectorStatus`` records, the models imported on
    first use (``plugstream normalize`` builds plain field dicts and never needs them)."""
    from ..models import construct_status

    return construct_status


class NormalizeContext:
    """Per-document inputs that are not in the payload: the Kafka record time and policy.

    Also memoizes event-time resolution for the document: its connectors usually carry the
    same few times, and the answer depends only on the candidates and the record time.
    ``build_record`` makes each record from its field dict (default: ``ConnectorStatus``).
    """

    __slots__ = (
        "_times",
        "build_record",
        "headers",
        "key",
        "max_connectors",
        "max_skew",
        "produced",
        "record_time",
        "trust_until",
        "warnings",
    )

    def __init__(
        self,
        record_time: datetime,
        max_skew: timedelta = _FIVE_MINUTES,
        warnings: Warnings | None = None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        max_connectors: int = DEFAULT_MAX_CONNECTORS,
        build_record: RecordBuilder | None = None,
    ) -> None:
        self.record_time = record_time
        self.max_skew = max_skew
        self.warnings = Warnings() if warnings is None else warnings
        self.trust_until = record_time + max_skew
        self._times: dict[str | tuple[tuple[Any, ...], tuple[type, ...]], ResolvedTime] = {}
        #: the Kafka record key and headers: some sources name ids there (OCPI push paths,
        #: OCPP charge point identities), see :meth:`header`
        self.key = key
        self.headers = headers
        self.max_connectors = max_connectors
        self.produced = 0  # records built for this document so far (the budget's counter)
        self.build_record = status_records() if build_record is None else build_record

    def header(self, name: str) -> str | None:
        """The text of the record header ``name`` (case-insensitive), or ``None``."""
        if not self.headers:
            return None
        for header, value in self.headers:
            if header.lower() == name and value is not None:
                try:
                    return value.decode() if isinstance(value, bytes | bytearray) else str(value)
                except UnicodeDecodeError:
                    raise Rejection("invalid_id", f"header {name} is not UTF-8") from None
        return None

    def key_text(self) -> str | None:
        """The record key as text (``None`` when there is none or it is not UTF-8)."""
        key = self.key
        if not key:
            return None
        try:
            return key.decode() if isinstance(key, bytes | bytearray) else str(key)
        except UnicodeDecodeError:
            return None

    def expect(self, count: int) -> None:
        """About to build ``count`` records: fail at once when they alone break the budget
        (a cheap early check; :meth:`spend` is the guarantee)."""
        if self.produced + count > self.max_connectors:
            self.produced = self.max_connectors
            self.spend()

    def spend(self) -> None:
        """Count one more record for this document; past the budget the whole document is
        rejected (``absurd_value``), so one huge document costs bounded work (DESIGN §2)."""
        self.produced += 1
        if self.produced > self.max_connectors:
            raise WholeDocumentRejected(
                Rejection(
                    "absurd_value",
                    f"document expands to more than {self.max_connectors} connectors "
                    "(PLUGSTREAM_MAX_CONNECTORS_PER_DOCUMENT)",
                )
            )

    def event_time(self, candidates: tuple[Any, ...]) -> ResolvedTime:
        """:func:`~streams.timeparse.resolve_event_time` for this record, memoized (``candidates`` non-empty)."""
        first = candidates[0]
        if first.__class__ is str and first:
            # the first present candidate decides, and text only equals text: key on it alone
            resolved = self._times.get(first)
            if resolved is None:
                resolved = self._times[first] = resolve_event_time((first,), self.record_time, self.trust_until)
            return resolved
        # the value types are part of the key: True == 1, yet one is unparseable and the other 1970
        key = (candidates, tuple(map(type, candidates)))
        try:
            resolved = self._times.get(key)
        except TypeError:  # an unhashable candidate (a Mongo ``{"$date": ...}`` object)
            return resolve_event_time(candidates, self.record_time, self.trust_until)
        if resolved is None:
            resolved = self._times[key] = resolve_event_time(candidates, self.record_time, self.trust_until)
        return resolved


class NormalizeResult:
    """What one document gave: canonical records, partial rejections, skip counts.

    The records are ``ConnectorStatus`` models unless the context's ``build_record`` made
    something else of their field dicts."""

    __slots__ = ("records", "rejections", "skipped")

    def __init__(self) -> None:
        self.records: list[ConnectorStatus] = []
        self.rejections: list[Rejection] = []
        self.skipped: dict[str, int] = {}

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


#: The stand-in for an absent or malformed sub-object: read-only, shared.
EMPTY_OBJECT: Mapping[str, Any] = MappingProxyType({})


def object_field(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A sub-object that is only read from (an address, a position), or :data:`EMPTY_OBJECT`
    when it is absent or not an object."""
    value = container.get(key)
    return value if isinstance(value, dict) else EMPTY_OBJECT


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

    Immutable once built: ``record_fields`` (the record fields these attributes set, with
    ``powerClass`` following ``maxPowerKw`` when known) is computed once, at construction,
    and ``AttributeCache`` hands the same instance to every connector with the same spec.
    """

    standard: ConnectorStandard | None = None
    format: ConnectorFormat | None = None
    powerType: PowerType | None = None
    maxPowerKw: float | None = None
    voltage: int | None = None
    amperage: int | None = None
    powerClass: int | None = None
    record_fields: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.record_fields = {
            "standard": self.standard,
            "format": self.format,
            "powerType": self.powerType,
            "maxPowerKw": self.maxPowerKw,
            "voltage": self.voltage,
            "amperage": self.amperage,
            "powerClass": self.powerClass if self.maxPowerKw is None else power_class(self.maxPowerKw),
        }


#: Every ConnectorStatus field in schema order (``tests/test_schemas.py`` pins it to the model
#: and the schema); records are copies of it filled in, so they keep one key order whatever
#: the adapter.
CONNECTOR_STATUS_FIELDS = (
    "source",
    "connectorUid",
    "evseUid",
    "scope",
    "connectorId",
    "locationId",
    "evseDisplayId",
    "status",
    "rawStatus",
    "live",
    "standard",
    "format",
    "powerType",
    "maxPowerKw",
    "voltage",
    "amperage",
    "powerClass",
    "eventTime",
    "eventTimeSource",
    "eventTimeIssue",
    "recordTime",
    "latitude",
    "longitude",
    "locationName",
    "operatorName",
    "city",
    "countryCode",
    "reliability",
    "uptime",
    "privilegeStatus",
    "snapshotConnectorUids",
)
_RECORD_TEMPLATE: dict[str, Any] = dict.fromkeys(CONNECTOR_STATUS_FIELDS)


class EvseRecords:
    """Builds the canonical records of one EVSE; the only place that knows the field list.

    The fields every connector of the EVSE shares (source, ids, place, record time, OMNI
    scores) are filled in once, into a base dict; :meth:`add` runs once per connector and
    only copies that base and sets what differs. Event times are resolved through the
    context's memo, since the connectors of one document usually carry the same times.
    """

    __slots__ = ("_base", "_build", "_ctx", "_first", "_listed", "evse_uid", "records")

    def __init__(
        self,
        source: Source,
        evse_uid: str,
        ctx: NormalizeContext,
        *,
        locationId: str | None = None,
        evseDisplayId: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
        locationName: str | None = None,
        operatorName: str | None = None,
        city: str | None = None,
        countryCode: str | None = None,
        reliability: float | None = None,
        uptime: float | None = None,
        privilegeStatus: str | None = None,
    ) -> None:
        base = {
            **_RECORD_TEMPLATE,  # first, so every record keeps the schema's key order
            "source": source,
            "evseUid": evse_uid,
            "scope": Scope.CONNECTOR,
            "locationId": locationId,
            "evseDisplayId": evseDisplayId,
            "recordTime": ctx.record_time,
            "latitude": latitude,
            "longitude": longitude,
            "locationName": locationName,
            "operatorName": operatorName,
            "city": city,
            "countryCode": countryCode,
            "reliability": reliability,
            "uptime": uptime,
            "privilegeStatus": privilegeStatus,
        }
        self._base = base
        self._ctx = ctx
        self._build = ctx.build_record
        self._first: dict[str, Any] | None = None  # the first record's fields (see mark_snapshot)
        self.evse_uid = evse_uid
        self.records: list[ConnectorStatus] = []
        self._listed: list[str] = []  # connector uids of CONNECTOR-scope records

    def add(
        self,
        connector_uid: str,
        connector_id: str | None,
        status: Status,
        raw_status: str | None,
        live: bool,
        attributes: Attributes,
        time_candidates: tuple[Any, ...],
        scope: Scope = Scope.CONNECTOR,
    ) -> None:
        """One connector's record (appended to :attr:`records`)."""
        self._ctx.spend()
        values = self._base.copy()
        values.update(attributes.record_fields)
        values["connectorUid"] = connector_uid
        values["connectorId"] = connector_id
        values["status"] = status
        values["rawStatus"] = raw_status
        values["live"] = live
        values["eventTime"], values["eventTimeSource"], values["eventTimeIssue"] = self._ctx.event_time(time_candidates)
        if scope is Scope.CONNECTOR:
            self._listed.append(connector_uid)
        else:
            values["scope"] = scope
        if self._first is None:
            self._first = values
        self.records.append(self._build(values))

    def mark_snapshot(self) -> None:
        """Stamp the snapshot's first record with the full list of connectors it listed.

        The dedupe stage marks connectors it knew for this EVSE but that are missing from the
        list as REMOVED at that record's event time (DESIGN §4). Only the first record carries
        the list: every record of the snapshot carrying it made a document's size quadratic in
        its connectors (1,000 connectors → a million list entries to encode and decode).
        A snapshot listing no connector gets an empty list on its EVSE-scope record.
        """
        if self._first is not None:  # the first record's own fields (RecordBuilder keeps the dict)
            self._first["snapshotConnectorUids"] = sorted(set(self._listed))


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
        # True == 1 == 1.0 hash alike, but a boolean must not alias a number: keys holding a
        # value equal to either are tagged with their value types. Equal ints and floats may
        # share an entry (every parse reads 32 and 32.0 alike; a test pins that).
        cache_key = key if True not in key and False not in key else (key, tuple(map(type, key)))
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
