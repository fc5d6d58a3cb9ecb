"""The pure core of the stateful stage: dedupe by connector, per-EVSE availability, windows.

Everything here is plain functions over plain state, driven only by the records' own times
(event time, record time) — never the wall clock — so a replay gives the same answer as a
live run. The Kafka shell (``streams/engine.py``) feeds records in partition order, persists
:class:`PartitionState` to a changelog and publishes the outputs.

Ordering rule (DESIGN §4): a report is *stale* when its event time is older than the newest
report seen for that connector; equal event times are ordered by record time, then by
arrival (the later record in the log wins).

Windows (DESIGN §5) are tumbling, aligned to the epoch, per EVSE. A window closes when the
EVSE's own event-time watermark (newest event time seen for it) passes window end + grace;
a report whose window has already closed is *late* (counted, not folded; the current table
still takes it). Using the EVSE's own watermark keeps every window independent of how EVSEs
share partitions, so the result does not depend on partition count or replay speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from .models import ConnectorStatus, Scope, Status
from .timeparse import to_millis

STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
AVAILABLE = Status.AVAILABLE.value
REMOVED = Status.REMOVED.value
PLACE_FIELDS = (
    "locationId",
    "evseDisplayId",
    "latitude",
    "longitude",
    "locationName",
    "operatorName",
    "city",
    "countryCode",
)
ATTRIBUTE_FIELDS = ("live", "standard", "format", "powerType", "maxPowerKw", "voltage", "amperage")


@dataclass(slots=True)
class ConnectorState:
    """Last accepted state of one connector plus the newest report seen (DESIGN §4)."""

    status: str
    attributes: tuple[Any, ...]  # ATTRIBUTE_FIELDS values: with status, the fingerprint
    changed_at: int  # event time (ms) of the last change
    seen_at: int  # event time (ms) of the newest report, accepted or duplicate
    seen_record: int  # record time (ms) of that report: the tie-break for equal event times
    raw_status: str | None
    connector_id: str | None
    power_class: int | None

    def to_json(self) -> list[Any]:
        return [
            self.status,
            list(self.attributes),
            self.changed_at,
            self.seen_at,
            self.seen_record,
            self.raw_status,
            self.connector_id,
            self.power_class,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> ConnectorState:
        status, attributes, changed, seen, seen_record, raw, connector_id, klass = data
        return cls(status, tuple(attributes), changed, seen, seen_record, raw, connector_id, klass)


@dataclass(slots=True)
class WindowAcc:
    """An open tumbling window of one EVSE."""

    start: int
    end: int
    integrated_to: int  # connector-time is integrated up to here
    available_ms: int = 0  # sum over connectors of time AVAILABLE
    present_ms: int = 0  # sum over connectors (not REMOVED) of time
    changes: int = 0
    last_update: int | None = None
    # over the states that lasted some time in this window while the EVSE had connectors (None
    # until one did): an EVSE first seen mid-window is not "0 available" before it existed, and
    # the passing states of one document's connectors changing at the same instant do not count
    min_available: int | None = None
    max_available: int | None = None
    counts: dict[str, int] = field(default_factory=dict)  # at the last change (or carried in)

    def to_json(self) -> list[Any]:
        return [
            self.start,
            self.end,
            self.integrated_to,
            self.available_ms,
            self.present_ms,
            self.changes,
            self.last_update,
            self.min_available,
            self.max_available,
            self.counts,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> WindowAcc:
        return cls(*data)


@dataclass(slots=True)
class EvseState:
    evse_uid: str
    source: str
    place: dict[str, Any]
    connectors: dict[str, ConnectorState] = field(default_factory=dict)
    last_update: int | None = None  # newest event time of any connector change; never goes back
    last_seen: int | None = None  # newest event time of any report (the EVSE's watermark)
    windows: dict[int, WindowAcc] = field(default_factory=dict)
    # connectors per status, kept in step with ``connectors`` by every status write below so
    # the per-record paths never recount; derived state, so not serialized
    tally: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "e": self.evse_uid,
            "s": self.source,
            "p": self.place,
            "c": {uid: c.to_json() for uid, c in self.connectors.items()},
            "u": self.last_update,
            "l": self.last_seen,
            "w": [w.to_json() for w in self.windows.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvseState:
        evse = cls(
            evse_uid=data["e"],
            source=data["s"],
            place=data["p"],
            connectors={uid: ConnectorState.from_json(c) for uid, c in data["c"].items()},
            last_update=data["u"],
            last_seen=data["l"],
            windows={w[0]: WindowAcc.from_json(w) for w in data["w"]},
        )
        for connector in evse.connectors.values():
            evse.tally[connector.status] += 1
        return evse

    def counts(self) -> dict[str, int]:
        """Connectors per status (every status present, zeros included); a fresh dict."""
        return self.tally.copy()

    def set_status(self, state: ConnectorState, status: str) -> None:
        tally = self.tally
        tally[state.status] -= 1
        tally[status] += 1
        state.status = status


COUNTERS = ("accepted", "duplicates", "stale", "late", "removedBySnapshot", "evseScopeUnmatched")


@dataclass(slots=True)
class Change:
    """One real connector change, published on ``connector-changes``."""

    connector_uid: str
    evse_uid: str
    source: str
    status: str
    previous_status: str | None
    previous_event_time: int | None
    event_time: int
    record_time: int
    kind: str  # NEW, STATUS, ATTRIBUTES, REMOVED_BY_SNAPSHOT
    state: ConnectorState


@dataclass(slots=True)
class Outcome:
    """What one input record did: counter deltas, changes and closed windows."""

    changes: list[Change] = field(default_factory=list)
    closed_windows: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    evse_changed: bool = False

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


def _is_stale(state: ConnectorState, event_time: int, record_time: int) -> bool:
    return event_time < state.seen_at or (event_time == state.seen_at and record_time < state.seen_record)


_pick_attributes = itemgetter(*ATTRIBUTE_FIELDS)


def _attributes_of(record: ConnectorStatus) -> tuple[Any, ...]:
    return _pick_attributes(record.__dict__)


def window_start(event_time: int, size_ms: int) -> int:
    return event_time - event_time % size_ms


@dataclass(slots=True)
class Policy:
    window_ms: int = 300_000
    grace_ms: int = 0
    staleness_ms: int = 1_800_000


#: Scopes whose record speaks about every known connector (of an EVSE, of a charge point).
WHOLE_SCOPES = frozenset({Scope.EVSE.value, Scope.CHARGE_POINT.value})


def partition_key(record: ConnectorStatus) -> str:
    """What a canonical record is partitioned by on ``connector-status`` (its Kafka key stays
    the ``evseUid``): the EVSE, except for OCPP, where every EVSE of a charge point shares its
    ``locationId`` (``ocpp:<chargePointId>``) so a charge-point-wide update finds them all in
    one partition."""
    if record.source == "ocpp" and record.locationId:
        return record.locationId
    return record.evseUid


def charge_point_evse(uid: str, charge_point_uid: str) -> bool:
    """Whether EVSE ``uid`` belongs to the OCPP charge point ``ocpp:<id>``: ``ocpp:<id>:<n>``."""
    prefix = charge_point_uid + ":"
    return uid.startswith(prefix) and uid[len(prefix) :].isdigit()


def apply_record(evse: EvseState, record: ConnectorStatus, policy: Policy) -> Outcome:
    """Fold one canonical record into its EVSE's state (DESIGN §4, §5).

    A ``CHARGE_POINT``-scope record is folded into each EVSE of its charge point in turn (the
    caller finds them: they share a partition) exactly like an EVSE-scope record.
    """
    outcome = Outcome()
    event_time = to_millis(record.eventTime)
    record_time = to_millis(record.recordTime)
    _update_place(evse, record)
    before = evse.counts()  # the counts this report's windows integrate up to its time

    whole = record.scope in WHOLE_SCOPES
    if whole:
        targets = list(evse.connectors)
        if not targets and record.snapshotConnectorUids is None:
            outcome.count("evseScopeUnmatched")
    else:
        targets = [record.connectorUid]

    late = _is_late(evse, event_time, policy)
    fresh_report = False
    for uid in targets:
        if _apply_to_connector(evse, uid, record, event_time, record_time, whole, outcome) != "stale":
            fresh_report = True
    if record.snapshotConnectorUids is not None:
        _apply_snapshot_removals(evse, record, event_time, record_time, outcome)

    if not (fresh_report or outcome.changes):
        return outcome  # only stale news: the EVSE, its watermark and its windows are untouched
    outcome.evse_changed = True
    if evse.last_seen is None or event_time > evse.last_seen:
        evse.last_seen = event_time
    if outcome.changes and (evse.last_update is None or event_time > evse.last_update):
        evse.last_update = event_time  # every change of one record carries its event time
    if late:
        outcome.count("late")
    else:
        _fold_windows(evse, event_time, before, outcome, policy)
    if evse.windows:
        _close_windows(evse, policy, outcome.closed_windows)
    return outcome


def _update_place(evse: EvseState, record: ConnectorStatus) -> None:
    values = record.__dict__
    for name in PLACE_FIELDS:
        value = values[name]
        if value is not None:
            evse.place[name] = value


def _apply_to_connector(
    evse: EvseState,
    uid: str,
    record: ConnectorStatus,
    event_time: int,
    record_time: int,
    whole: bool,
    outcome: Outcome,
) -> str:
    state = evse.connectors.get(uid)
    status = str(record.status)
    # an EVSE-wide status keeps each connector's own attributes
    attributes = state.attributes if whole and state is not None else _attributes_of(record)
    if state is None:
        state = ConnectorState(
            status,
            attributes,
            event_time,
            event_time,
            record_time,
            record.rawStatus,
            record.connectorId,
            record.powerClass,
        )
        evse.connectors[uid] = state
        evse.tally[status] += 1
        outcome.count("accepted")
        outcome.changes.append(
            Change(uid, evse.evse_uid, str(record.source), status, None, None, event_time, record_time, "NEW", state)
        )
        return "accepted"
    if _is_stale(state, event_time, record_time):
        outcome.count("stale")
        return "stale"
    state.seen_at, state.seen_record = event_time, record_time
    if state.status == status and state.attributes == attributes:
        outcome.count("duplicates")
        return "duplicate"
    previous, previous_time = state.status, state.changed_at
    kind = "STATUS" if previous != status else "ATTRIBUTES"
    evse.set_status(state, status)
    state.attributes, state.changed_at = attributes, event_time
    state.raw_status = record.rawStatus
    if not whole:
        state.connector_id, state.power_class = record.connectorId, record.powerClass
    outcome.count("accepted")
    outcome.changes.append(
        Change(
            uid,
            evse.evse_uid,
            str(record.source),
            status,
            previous,
            previous_time,
            event_time,
            record_time,
            kind,
            state,
        )
    )
    return "accepted"


def _apply_snapshot_removals(
    evse: EvseState, record: ConnectorStatus, event_time: int, record_time: int, outcome: Outcome
) -> None:
    listed = set(record.snapshotConnectorUids or ())
    for uid, state in evse.connectors.items():
        if uid in listed or state.status == REMOVED or uid.endswith("#*"):
            continue
        if _is_stale(state, event_time, record_time):
            continue  # the connector was reported after this snapshot: the snapshot is older news
        previous, previous_time = state.status, state.changed_at
        evse.set_status(state, REMOVED)
        state.changed_at = event_time
        state.seen_at, state.seen_record = event_time, record_time
        state.raw_status = "missing from snapshot"
        outcome.count("removedBySnapshot")
        outcome.changes.append(
            Change(
                uid,
                evse.evse_uid,
                evse.source,
                REMOVED,
                previous,
                previous_time,
                event_time,
                record_time,
                "REMOVED_BY_SNAPSHOT",
                state,
            )
        )


# --- windows --------------------------------------------------------------------------------


def _present(counts: dict[str, int]) -> int:
    return sum(counts.values()) - counts[REMOVED]


def _is_late(evse: EvseState, event_time: int, policy: Policy) -> bool:
    """The report's window has closed: the EVSE's watermark already passed its end + grace."""
    if evse.last_seen is None:
        return False
    return window_start(event_time, policy.window_ms) + policy.window_ms + policy.grace_ms <= evse.last_seen


def _integrate(window: WindowAcc, until: int, counts: dict[str, int]) -> None:
    until = min(until, window.end)
    if until > window.integrated_to:
        span = until - window.integrated_to
        available, present = counts[AVAILABLE], _present(counts)
        window.available_ms += span * available
        window.present_ms += span * present
        window.integrated_to = until
        if present:
            if window.min_available is None or available < window.min_available:
                window.min_available = available
            if window.max_available is None or available > window.max_available:
                window.max_available = available


def _fold_windows(evse: EvseState, event_time: int, before: dict[str, int], outcome: Outcome, policy: Policy) -> None:
    start = window_start(event_time, policy.window_ms)
    for window in evse.windows.values():  # connector-time up to this report, with the old counts
        _integrate(window, event_time, before)
    window = evse.windows.get(start)
    if window is None:
        window = WindowAcc(start, start + policy.window_ms, integrated_to=start, counts=before)
        _integrate(window, event_time, before)  # state carried in from the previous window
        evse.windows[start] = window
    if outcome.changes:
        after = evse.counts()
        window.changes += len(outcome.changes)
        if window.last_update is None or event_time > window.last_update:
            window.last_update = event_time
        window.counts = after


def _close_windows(evse: EvseState, policy: Policy, closed: list[dict[str, Any]]) -> None:
    """Close (integrate to the end, emit, forget) every window the EVSE's watermark passed."""
    watermark = evse.last_seen
    if watermark is None:
        return
    for start in sorted(evse.windows):
        window = evse.windows[start]
        if window.end + policy.grace_ms > watermark:
            break
        _integrate(window, window.end, evse.tally)
        closed.append(window_record(evse, window))
        del evse.windows[start]


def window_record(evse: EvseState, window: WindowAcc) -> dict[str, Any]:
    counts = dict.fromkeys(STATUSES, 0) | window.counts
    return {
        "evseUid": evse.evse_uid,
        "source": evse.source,
        "windowStart": window.start,
        "windowEnd": window.end,
        "statusCounts": counts,
        "connectorsTotal": _present(counts),
        "available": counts[AVAILABLE],
        "minAvailable": counts[AVAILABLE] if window.min_available is None else window.min_available,
        "maxAvailable": counts[AVAILABLE] if window.max_available is None else window.max_available,
        "changes": window.changes,
        "lastUpdateTimestamp": window.last_update,
        "availableShare": (window.available_ms / window.present_ms) if window.present_ms else None,
    }


# --- the availability view --------------------------------------------------------------------


def availability(evse: EvseState, stream_time: int | None, policy: Policy) -> dict[str, Any]:
    """The ``evse-availability`` record (Avro field names; times as epoch ms)."""
    counts = evse.counts()
    by_standard: dict[str, dict[str, int]] = {}
    by_power: dict[str, dict[str, int]] = {}
    max_available_kw = None
    connectors = []
    for uid in sorted(evse.connectors):
        state = evse.connectors[uid]
        live, standard, _fmt, _ptype, max_kw, _v, _a = state.attributes
        if state.status != REMOVED:
            is_available = state.status == AVAILABLE
            for table, key in (
                (by_standard, standard or "UNKNOWN"),
                (by_power, str(state.power_class) if state.power_class else "UNKNOWN"),
            ):
                slot = table.setdefault(key, {"total": 0, "available": 0})
                slot["total"] += 1
                slot["available"] += is_available
            if is_available and max_kw is not None:
                max_available_kw = max_kw if max_available_kw is None else max(max_available_kw, max_kw)
        connectors.append(
            {
                "connectorUid": uid,
                "connectorId": state.connector_id,
                "status": state.status,
                "rawStatus": state.raw_status,
                "live": bool(live),
                "standard": standard,
                "powerClass": state.power_class,
                "maxPowerKw": max_kw,
                "lastChangeTimestamp": state.changed_at,
                "lastSeenTimestamp": state.seen_at,
            }
        )
    stale = is_stale(evse.last_seen, stream_time, policy.staleness_ms)
    return {
        "evseUid": evse.evse_uid,
        "source": evse.source,
        **{name: evse.place.get(name) for name in PLACE_FIELDS},
        "statusCounts": counts,
        "connectorsTotal": _present(counts),
        "available": counts[AVAILABLE],
        "byStandard": by_standard,
        "byPowerClass": by_power,
        "maxAvailablePowerKw": max_available_kw,
        "lastUpdateTimestamp": evse.last_update,
        "lastSeenTimestamp": evse.last_seen,
        "stale": bool(stale),
        "streamTime": stream_time,
        "connectors": connectors,
    }


def is_stale(last_seen: int | None, stream_time: int | None, staleness_ms: int) -> bool:
    """Nothing seen for the horizon, against stream time (any consumer can recompute this)."""
    return last_seen is not None and stream_time is not None and stream_time - last_seen > staleness_ms


def new_evse(record: ConnectorStatus) -> EvseState:
    return EvseState(evse_uid=record.evseUid, source=str(record.source), place={})
