"""A queryable global view of the output topics, kept by every worker.

Each worker tails ``evse-availability`` and ``evse-availability-windowed`` over *all*
partitions (no consumer group), exactly like a downstream consumer. So any worker answers an
HTTP query for any EVSE, whichever worker owns its partition, and the live stream is the same
on every worker. The view is rebuilt from the topics on start (read to the fetch high
watermark first, so it is complete before the API reports ready).

Live subscribers get every availability update through a bounded queue: a slow or vanished
client loses its oldest events (and is told so), it never slows the pipeline or grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from . import avro, kafka
from .core import is_stale
from .kafka import Kafka
from .timeparse import from_millis, rfc3339, to_millis
from .topics import DRAIN_FETCH, EVSE_AVAILABILITY, EVSE_AVAILABILITY_WINDOWED, drain

log = logging.getLogger("plugstream.view")
REPLAY_BUFFER = 2000  # events kept for Last-Event-ID resume
WINDOW_HISTORY = 288  # windows kept per EVSE (24 h of 5-minute windows)


@dataclass(slots=True)
class Event:
    id: int
    evse: dict[str, Any]


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


class GlobalView:
    def __init__(self, bootstrap: str | Kafka, partitions: int, staleness_ms: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.staleness_ms = staleness_ms
        self.evses: dict[str, dict[str, Any]] = {}
        self.connector_index: dict[str, str] = {}
        self.windows: dict[str, deque[dict[str, Any]]] = {}
        self.stream_time: int | None = None
        self.sequence = 0
        self.recent: deque[Event] = deque(maxlen=REPLAY_BUFFER)
        self.subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()
        self.updates = 0
        self.applied: dict[tuple[str, int], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="view")
        done, _ = await asyncio.wait(
            [self._task, asyncio.create_task(self.ready.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if self._task in done:
            self._task.result()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for subscriber in list(self.subscribers):
            subscriber.offer_end()

    async def _run(self) -> None:
        consumer = kafka.consumer(self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **DRAIN_FETCH)
        self._consumer = consumer
        await consumer.start()
        try:
            tps = [
                TopicPartition(t, p)
                for t in (EVSE_AVAILABILITY, EVSE_AVAILABILITY_WINDOWED)
                for p in range(self.partitions)
            ]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            for partition_records in (await drain(consumer, tps)).values():
                for message in partition_records:
                    self._apply(message, live=False)
            self.ready.set()
            while True:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for message in messages:
                        self._apply(message, live=True)
        finally:
            await consumer.stop()

    def _apply(self, message: Any, live: bool) -> None:
        self.applied[(message.topic, message.partition)] = message.offset + 1
        if message.topic == EVSE_AVAILABILITY_WINDOWED:
            window = avro.to_jsonable(avro.decode("EvseAvailabilityWindow", message.value))
            history = self.windows.setdefault(window["evseUid"], deque(maxlen=WINDOW_HISTORY))
            if not history or history[-1]["windowStart"] < window["windowStart"]:
                history.append(window)
            return
        view = avro.decode("EvseAvailability", message.value)
        if view["streamTime"] is not None:
            stream_time = to_millis(view["streamTime"])
            self.stream_time = stream_time if self.stream_time is None else max(self.stream_time, stream_time)
        evse = avro.to_jsonable(view)
        uid = evse["evseUid"]
        previous = self.evses.get(uid)
        if previous is not None:
            for connector in previous["connectors"]:
                self.connector_index.pop(connector["connectorUid"], None)
        self.evses[uid] = evse
        for connector in evse["connectors"]:
            self.connector_index[connector["connectorUid"]] = uid
        self.updates += 1
        if live:
            self.sequence += 1
            event = Event(self.sequence, evse)
            self.recent.append(event)
            for subscriber in list(self.subscribers):
                subscriber.offer(event)

    # -- queries --------------------------------------------------------------------------
    def current(self, evse: dict[str, Any]) -> dict[str, Any]:
        """The record with staleness re-evaluated against the newest stream time seen."""
        last_seen = evse["lastSeenTimestamp"]
        seen_ms = None if last_seen is None else to_millis(_parse(last_seen))
        stale = is_stale(seen_ms, self.stream_time, self.staleness_ms)
        stream = None if self.stream_time is None else rfc3339(from_millis(self.stream_time))
        return {**evse, "stale": stale, "streamTime": stream}

    def lag(self) -> dict[str, int]:
        """Records on the output topics not yet applied to this view, per topic."""
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


def _parse(text: str) -> Any:
    from .timeparse import parse_timestamp

    return parse_timestamp(text)
