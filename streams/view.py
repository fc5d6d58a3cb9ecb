"""A queryable global view of the output topics, kept by the HTTP API process.

The API process tails ``evse-availability``, ``evse-availability-windowed`` and
``plugstream.dlq`` over *all* partitions (no consumer group), exactly like a downstream
consumer. So any worker's API answers for any EVSE, whichever worker owns its partition, and
the live stream is the same everywhere. The view is rebuilt from the topics on start (read to
the fetch high watermark first, so it is complete before the API reports ready).

Records are kept as the bytes they arrived as and decoded when something asks for them: a
query, the live stream, the fleet totals. While nobody looks (a worker chewing through a
backlog) the view costs a dictionary store per record, not a decode.

A record that cannot be decoded (a misconfigured producer wrote to an output topic) is
skipped and counted per topic, logged at most once a minute with its topic/partition/offset;
it never stops the view.

Live subscribers get every availability update through a bounded queue: a slow or vanished
client loses its oldest events (and is told so), it never slows the view or grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from . import avro, kafka
from .codec import text_millis
from .core import STATUSES, is_stale
from .kafka import Kafka
from .timeparse import from_millis, rfc3339
from .topics import DLQ, DRAIN_FETCH, EVSE_AVAILABILITY, EVSE_AVAILABILITY_WINDOWED, drain

log = logging.getLogger("plugstream.view")
REPLAY_BUFFER = 2000  # events kept for Last-Event-ID resume
WINDOW_HISTORY = 288  # windows kept per EVSE (24 h of 5-minute windows)
DEAD_LETTERS_KEPT = 50
_DIGITS = re.compile(r"(\d+)")


@lru_cache(maxsize=200_000)
def natural_key(text: str) -> tuple[Any, ...]:
    """``cs-11`` after ``cs-2``: digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(text))


@dataclass(slots=True)
class Event:
    id: int
    evse: dict[str, Any]
    #: (stream time it was rendered at, the current record, its SSE bytes): shared by every
    #: subscriber, so a change is serialized once however many clients watch
    rendered: tuple[int | None, dict[str, Any], bytes] | None = None


@dataclass(eq=False)  # identity semantics: kept in a set
class Subscriber:
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: int = 0

    def offer(self, event: Event) -> None:
        """Queue an event; when the client is behind, drop its oldest one and count it."""
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    def offer_end(self) -> None:
        """Tell the client's stream to finish (server shutting down)."""
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(None)


class RateLimitedLog:
    """One log line per ``interval`` per key; the rest are counted into the next line."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) >= self.interval:
            suppressed = self._suppressed.pop(key, 0)
            suffix = f" ({suppressed} more since the last report)" if suppressed else ""
            self.logger.warning(message + suffix, *args)
            self._last[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1


@dataclass(slots=True)
class _Raw:
    value: bytes
    partition: int
    offset: int
    headers: Any  # the writer's schema fingerprint travels in a header (streams/avro.py)


class GlobalView:
    def __init__(self, bootstrap: str | Kafka, partitions: int, staleness_ms: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.staleness_ms = staleness_ms
        self._pending: dict[str, _Raw] = {}  # newest availability record per EVSE since the last decode
        self.evses: dict[str, dict[str, Any]] = {}  # decoded, JSON-ready
        self.seen_ms: dict[str, int | None] = {}  # lastSeenTimestamp per EVSE, epoch ms
        self.last_query = -1e9
        self._items: list[dict[str, Any]] = []
        self._items_key: tuple[int, int | None] | None = None
        self.connector_index: dict[str, str] = {}
        self._windows: dict[str, deque[_Raw]] = {}
        self._window_cache: dict[str, list[dict[str, Any]]] = {}
        self._dead_letters: deque[_Raw] = deque(maxlen=DEAD_LETTERS_KEPT)
        self.dead_letter_counts: dict[tuple[str, str], int] = {}  # (stage, errorKind) → records
        self.stream_time: int | None = None
        self.sequence = 0
        self.recent: deque[Event] = deque(maxlen=REPLAY_BUFFER)
        self.subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()
        self.updates = 0
        self._stream_time_text: tuple[int | None, str | None] = (None, None)
        self.version = 0  # bumps whenever the decoded EVSE table changes (response caches key on it)
        self.unreadable: dict[str, int] = {}
        self.applied: dict[tuple[str, int], int] = {}
        self.last_fetch_ok: float | None = None  # monotonic time of the last fetch round
        self._unreadable_log = RateLimitedLog(log)
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="view")
        waiter = asyncio.ensure_future(self.ready.wait())
        done, _ = await asyncio.wait([self._task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task in done:
            self._task.result()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for subscriber in list(self.subscribers):
            subscriber.offer_end()

    @property
    def failed(self) -> BaseException | None:
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def _run(self) -> None:
        consumer = kafka.consumer(self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **DRAIN_FETCH)
        self._consumer = consumer
        await consumer.start()
        try:
            tps = [
                TopicPartition(t, p)
                for t in (EVSE_AVAILABILITY, EVSE_AVAILABILITY_WINDOWED, DLQ)
                for p in range(self.partitions)
            ]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            for partition_records in (await drain(consumer, tps)).values():
                for message in partition_records:
                    self._take(message)
            self.refresh()
            self.last_fetch_ok = time.monotonic()
            self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                self.last_fetch_ok = time.monotonic()
                for messages in batches.values():
                    for message in messages:
                        self._take(message)
                watched = self.subscribers or time.monotonic() - self.last_query < 10
                if self._pending and watched:
                    self.refresh(budget=0.02)  # someone is watching: decode (a bounded slice) now
        finally:
            await consumer.stop()

    def _take(self, message: Any) -> None:
        """Keep a fetched record, undecoded."""
        topic = message.topic
        self.applied[(topic, message.partition)] = message.offset + 1
        raw = _Raw(message.value or b"", message.partition, message.offset, message.headers)
        if topic == EVSE_AVAILABILITY:
            key = self._key(message)
            if key is not None:
                self._pending[key] = raw
        elif topic == EVSE_AVAILABILITY_WINDOWED:
            key = self._key(message)
            if key is not None:
                self._windows.setdefault(key, deque(maxlen=WINDOW_HISTORY)).append(raw)
                self._window_cache.pop(key, None)
        else:
            self._dead_letters.append(raw)
            try:  # counted as they arrive (the DLQ is small): totals for every stage and kind
                letter = avro.decode_resolved("DeadLetter", raw.value, raw.headers)
            except Exception as exc:
                self._poison(DLQ, raw.partition, raw.offset, f"{type(exc).__name__}: {exc}")
                return
            self.dead_letter_counts[(letter["stage"], letter["errorKind"])] = (
                self.dead_letter_counts.get((letter["stage"], letter["errorKind"]), 0) + 1
            )

    def _key(self, message: Any) -> str | None:
        try:
            return message.key.decode()
        except (AttributeError, UnicodeDecodeError):
            self._poison(message.topic, message.partition, message.offset, "the key is not a UTF-8 EVSE id")
            return None

    def _poison(self, topic: str, partition: int, offset: int, why: str) -> None:
        self.unreadable[topic] = self.unreadable.get(topic, 0) + 1
        self._unreadable_log.warning(
            topic, "skipping an unreadable record on %s partition %d offset %d: %s", topic, partition, offset, why
        )

    def refresh(self, budget: float | None = None) -> bool:
        """Decode what arrived since the last call, for at most ``budget`` seconds (all of it
        when None); True when nothing is left pending. Queries call this first with a small
        budget, so a query on a busy machine answers from a slightly older view rather than
        waiting for thousands of decodes (the rest is decoded by the next call)."""
        pending = self._pending
        if not pending:
            return True
        deadline = None if budget is None else time.perf_counter() + budget
        live = self.ready.is_set()
        decoded = 0
        while pending:
            uid, raw = pending.popitem()
            try:
                record = avro.decode_json("EvseAvailability", raw.value, raw.headers)
                if record["evseUid"] != uid:
                    raise ValueError(f"key {uid!r} names another EVSE than the record ({record['evseUid']!r})")
            except Exception as exc:  # not Avro, or not this schema: the EVSE keeps its last good record
                self._poison(EVSE_AVAILABILITY, raw.partition, raw.offset, f"{type(exc).__name__}: {exc}")
                continue
            evse = self._store(uid, record)
            decoded += 1
            if live and self.subscribers:
                self.sequence += 1
                event = Event(self.sequence, evse)
                self.recent.append(event)
                for subscriber in list(self.subscribers):
                    subscriber.offer(event)
            elif live:
                self.sequence += 1
                self.recent.append(Event(self.sequence, evse))
            if deadline is not None and decoded % 32 == 0 and time.perf_counter() > deadline:
                break
        if decoded:
            self.version += 1
        return not pending

    def _store(self, uid: str, evse: dict[str, Any]) -> dict[str, Any]:
        """Keep a decoded (JSON-ready) record, with its times in ms beside it."""
        last_seen, stream_time = evse["lastSeenTimestamp"], evse["streamTime"]
        self.seen_ms[uid] = None if last_seen is None else text_millis(last_seen)
        if stream_time is not None:
            stream_ms = text_millis(stream_time)
            if self.stream_time is None or stream_ms > self.stream_time:
                self.stream_time = stream_ms
        previous = self.evses.get(uid)
        if previous is not None:
            for connector in previous["connectors"]:
                self.connector_index.pop(connector["connectorUid"], None)
        self.evses[uid] = evse
        for connector in evse["connectors"]:
            self.connector_index[connector["connectorUid"]] = uid
        self.updates += 1
        return evse

    def touch(self) -> None:
        """A query arrived: keep decoding in the background for a while."""
        self.last_query = time.monotonic()

    # -- queries --------------------------------------------------------------------------
    def current(self, evse: dict[str, Any]) -> dict[str, Any]:
        """The record with staleness re-evaluated against the newest stream time seen."""
        stale = is_stale(self.seen_ms.get(evse["evseUid"]), self.stream_time, self.staleness_ms)
        return {**evse, "stale": stale, "streamTime": self.stream_time_text()}

    def render(self, event: Event) -> tuple[dict[str, Any], bytes]:
        """The event's current record and its SSE frame, computed once per stream time."""
        rendered = event.rendered
        if rendered is None or rendered[0] != self.stream_time:
            evse = self.current(event.evse)
            frame = b"id: %d\nevent: evse\ndata: " % event.id + orjson.dumps(evse) + b"\n\n"
            rendered = event.rendered = (self.stream_time, evse, frame)
        return rendered[1], rendered[2]

    def current_items(self) -> list[dict[str, Any]]:
        """Every EVSE as :meth:`current` gives it; computed once per view version."""
        key = (self.version, self.stream_time)
        if self._items_key != key:
            self._items = [self.current(evse) for evse in self.evses.values()]
            self._items_key = key
        return self._items

    def stream_time_text(self) -> str | None:
        """The stream time as RFC 3339, formatted once per value: every EVSE record a query or
        the live stream renders carries it (2,000 formattings per query while busy were 12 ms)."""
        stream_time = self.stream_time
        if self._stream_time_text[0] != stream_time:
            text = None if stream_time is None else rfc3339(from_millis(stream_time))
            self._stream_time_text = (stream_time, text)
        return self._stream_time_text[1]

    def windows(self, uid: str) -> list[dict[str, Any]]:
        """Closed windows of one EVSE, oldest first (a redelivered window counts once)."""
        cached = self._window_cache.get(uid)
        if cached is not None:
            return cached
        by_start: dict[str, dict[str, Any]] = {}
        for raw in self._windows.get(uid, ()):
            try:
                window = avro.decode_json("EvseAvailabilityWindow", raw.value, raw.headers)
            except Exception as exc:
                self._poison(EVSE_AVAILABILITY_WINDOWED, raw.partition, raw.offset, f"{type(exc).__name__}: {exc}")
                continue
            by_start[window["windowStart"]] = window
        windows = [by_start[start] for start in sorted(by_start)]
        self._window_cache[uid] = windows
        return windows

    def fleet_windows(self) -> list[dict[str, Any]]:
        """Per window start, over every EVSE: connector-weighted available share and totals."""
        fleet: dict[str, dict[str, Any]] = {}
        for uid in self._windows:
            for window in self.windows(uid):
                slot = fleet.setdefault(
                    window["windowStart"],
                    {
                        "windowStart": window["windowStart"],
                        "windowEnd": window["windowEnd"],
                        "evses": 0,
                        "connectorsTotal": 0,
                        "available": 0,
                        "_weighted": 0.0,
                        "_weight": 0,
                    },
                )
                slot["evses"] += 1
                slot["connectorsTotal"] += window["connectorsTotal"]
                slot["available"] += window["available"]
                if window["availableShare"] is not None:
                    slot["_weighted"] += window["availableShare"] * window["connectorsTotal"]
                    slot["_weight"] += window["connectorsTotal"]
        result = []
        for start in sorted(fleet):
            slot = fleet[start]
            weight = slot.pop("_weight")
            weighted = slot.pop("_weighted")
            slot["availableShare"] = weighted / weight if weight else None
            result.append(slot)
        return result

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The newest dead letters, newest first (payload shown as text, shortened)."""
        letters = []
        for raw in reversed(self._dead_letters):
            try:
                letter = avro.decode_resolved("DeadLetter", raw.value, raw.headers)
            except Exception as exc:
                self._poison(DLQ, raw.partition, raw.offset, f"{type(exc).__name__}: {exc}")
                continue
            payload = letter.pop("payload") or b""
            letter.pop("key", None)
            letter = avro.to_jsonable(letter)
            letter["payloadPreview"] = payload[:200].decode("utf-8", "replace")
            letters.append(letter)
            if len(letters) >= limit:
                break
        return letters

    def dead_letter_totals(self) -> dict[str, Any]:
        """Everything on ``plugstream.dlq``, whoever wrote it (normalize, aggregate, replay)."""
        by_kind: dict[str, int] = {}
        by_stage: dict[str, int] = {}
        for (stage, kind), n in self.dead_letter_counts.items():
            by_kind[kind] = by_kind.get(kind, 0) + n
            by_stage[stage] = by_stage.get(stage, 0) + n
        return {"total": sum(by_kind.values()), "byKind": by_kind, "byStage": by_stage}

    def summary(self) -> dict[str, Any]:
        """Fleet totals for the dashboard tiles: EVSEs and connectors, per status and source."""
        counts = dict.fromkeys(STATUSES, 0)
        by_source: dict[str, dict[str, int]] = {}
        connectors = available = stale = 0
        for evse in self.evses.values():
            for status, n in evse["statusCounts"].items():
                counts[status] = counts.get(status, 0) + n
            connectors += evse["connectorsTotal"]
            available += evse["available"]
            slot = by_source.setdefault(evse["source"], {"evses": 0, "connectors": 0, "available": 0})
            slot["evses"] += 1
            slot["connectors"] += evse["connectorsTotal"]
            slot["available"] += evse["available"]
            if is_stale(self.seen_ms.get(evse["evseUid"]), self.stream_time, self.staleness_ms):
                stale += 1
        return {
            "evses": len(self.evses),
            "connectors": connectors,
            "availableConnectors": available,
            "connectorsByStatus": counts,
            "staleEvses": stale,
            "bySource": by_source,
            "streamTime": self.stream_time_text(),
        }

    def lag(self) -> dict[str, int]:
        """Records on the output topics not yet taken into this view, per topic."""
        consumer = self._consumer
        lag: dict[str, int] = {}
        if consumer is None:
            return lag
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                applied = self.applied.get((tp.topic, tp.partition), 0)
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - applied)
        return lag

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def since(self, event_id: int) -> list[Event] | None:
        """Events after ``event_id`` for a resuming client; None if they are no longer kept."""
        if not self.recent or event_id >= self.recent[-1].id:
            return []
        if event_id < self.recent[0].id - 1:
            return None
        return [e for e in self.recent if e.id > event_id]
