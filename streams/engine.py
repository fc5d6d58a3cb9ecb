"""The Kafka shell: two stages wired to topics, state and the DLQ. No business logic here.

Stage 1 — normalize (stateless): ``raw.<source>`` bytes → adapter → ``connector-status``
(Avro, key ``evseUid``) and ``plugstream.dlq``. At-least-once: offsets are committed after
the produced records are acknowledged; a redelivered raw record yields the same canonical
records, which stage 2 classifies as duplicates or stale.

Stage 2 — aggregate (stateful, keyed by ``evseUid``): ``connector-status`` →
:mod:`streams.core` → ``connector-changes``, ``evse-availability`` (latest per EVSE, one
record per EVSE per processed batch), ``evse-availability-windowed``. Per input partition
the whole state (EVSEs + counters + stream time + the input offset it reflects) lives in
memory and is written to a compacted changelog after the batch's outputs are acknowledged.
Recovery replays the changelog to its fetch high watermark (not ListOffsets, which the
embedded broker gets wrong for multi-record batches) and resumes from the stored offset,
so state effects are applied exactly once; outputs are at-least-once.

Why not Faust agents/tables here: Faust's table recovery reads end offsets via ListOffsets,
which loses changelog records on the embedded broker unless every producer batch holds one
record (~7k msg/s); batching per partition with an offset-stamped state snapshot keeps
recovery exact at full producer throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata

from . import avro, kafka
from .adapters import NormalizeContext, Rejection, normalize_bytes
from .avro import schema_headers
from .config import Settings
from .core import (
    COUNTERS,
    EvseState,
    Policy,
    apply_record,
    availability,
    charge_point_evse,
    new_evse,
    partition_key,
)
from .kafka import Kafka
from .models import Scope, Source, construct_status
from .standby import StandbyPlan, StandbyTailer, standby_assignor
from .store import MemoryStore, PartitionStore, StoreFactory
from .timeparse import from_millis
from .topics import (
    CONNECTOR_CHANGES,
    CONNECTOR_STATUS,
    DLQ,
    DRAIN_FETCH,
    EVSE_AVAILABILITY,
    EVSE_AVAILABILITY_WINDOWED,
    RAW_TOPICS,
    changelog_topic,
    drain,
    ensure_topics,
    fetch_limits,
    topic_specs,
)

log = logging.getLogger("plugstream.engine")
META_KEY = b"\x00meta"
AHEAD_REPORT_SECONDS = 60.0  # how long health reports an offsets-ahead reset


def check_state_record(key: bytes | None, value: bytes | None) -> None:
    """Raise unless this is a changelog state record (a UTF-8 EVSE key, a JSON object or a
    deletion)."""
    if key is None:
        raise ValueError("no key")
    key.decode()
    if value is not None and not value.startswith(b"{"):
        raise ValueError("value is not a state object")


_partitioner = DefaultPartitioner()


_PARTITION_CACHE: dict[tuple[bytes, int], int] = {}
_NO_HEADERS: list[tuple[str, bytes]] = []  # aiokafka wants a list; it only reads it


def partition_for(key: bytes, partitions: int) -> int:
    """Same murmur2 partitioning as the Java client and aiokafka's default partitioner
    (memoized: keys are EVSE ids, which repeat; murmur2 is pure Python in aiokafka)."""
    slot = (key, partitions)
    partition = _PARTITION_CACHE.get(slot)
    if partition is None:
        if len(_PARTITION_CACHE) > 200_000:
            _PARTITION_CACHE.clear()
        all_partitions = list(range(partitions))
        partition = _PARTITION_CACHE[slot] = _partitioner(key, all_partitions, all_partitions)
    return partition


@dataclass(slots=True)
class Stage1Stats:
    rawRecords: int = 0
    statusRecords: int = 0
    rejected: int = 0
    skipped: int = 0
    skippedByReason: dict[str, int] = field(default_factory=dict)
    rejectedByKind: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    bySource: dict[str, int] = field(default_factory=dict)


class Batcher:
    """Collects records per (topic, partition) and sends each as one producer batch.

    A record may carry a ``tag``; :meth:`flush` hands each batch's tags back in order, so the
    caller learns which offset every tagged record got (the in-process :class:`Handoff`).
    """

    def __init__(self, producer: AIOKafkaProducer, partitions: int) -> None:
        self.producer = producer
        self.partitions = partitions
        self.pending: dict[tuple[str, int], Any] = {}
        self.tags: dict[tuple[str, int], list[Any]] = {}
        self.futures: list[tuple[asyncio.Future[Any], int, list[Any] | None]] = []

    async def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        tag: Any = None,
    ) -> None:
        if partition is None:
            partition = partition_for(key or b"", self.partitions)
        slot = (topic, partition)
        batch = self.pending.get(slot)
        if batch is None:
            batch = self.pending[slot] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=timestamp_ms, headers=headers or _NO_HEADERS) is None:
            await self._send(slot, batch)
            batch = self.pending[slot] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=timestamp_ms, headers=headers or _NO_HEADERS) is None:
                raise ValueError(f"record of {len(value)} bytes does not fit a producer batch")
        if tag is not None:
            self.tags.setdefault(slot, []).append(tag)

    async def _send(self, slot: tuple[str, int], batch: Any) -> None:
        topic, partition = slot
        count = batch.record_count()
        tags = self.tags.pop(slot, None)
        if tags is not None and len(tags) != count:
            tags = None  # tagged and untagged records shared this batch: offsets unknown, drop them
        self.futures.append((await self.producer.send_batch(batch, topic, partition=partition), count, tags))

    async def flush(self) -> list[tuple[Any, int, list[Any] | None]]:
        """Send everything pending and wait for every acknowledgement (raises on failure).

        Returns ``(RecordMetadata of the batch's first record, records in the batch, their
        tags or None)``.
        """
        for slot, batch in list(self.pending.items()):
            if batch.record_count():
                await self._send(slot, batch)
        self.pending.clear()
        sent, self.futures = self.futures, []
        metas = await asyncio.gather(*(future for future, _, _ in sent))
        return [(meta, count, tags) for meta, (_, count, tags) in zip(metas, sent, strict=True)]


class Handoff:
    """Canonical records stage 1 produced, waiting for stage 2 in the same process.

    Stage 2 still consumes every ``connector-status`` record from Kafka (its offsets are what
    exactly-once state is stamped with), but for a partition this process owns it takes the
    record object stage 1 built instead of decoding the bytes — once it has checked the bytes
    on the topic are the very bytes stage 1 encoded from that object (``tests/test_handoff.py``
    proves the two paths give the same state and outputs).

    Bounded, because each waiting record costs about 1.5 KB: past ``limit`` waiting records
    nothing more is kept (stage 2 decodes). And stage 1 holds back while half of that waits
    and stage 2 is draining it (:meth:`wait_for_room`): on a backlog stage 1 is the quicker
    stage and would otherwise run ever further ahead, filling the handoff with records stage
    2 reaches much later — 200,000 of them were 300 MB of a 1M-record soak's peak.
    """

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self.by_partition: dict[int, dict[int, tuple[bytes, Any]]] = {}
        self.size = 0
        self.taken = 0
        self.decoded = 0
        self.waits = 0  # how often stage 1 held back for stage 2
        self._room = asyncio.Event()

    def open(self, partition: int) -> None:
        self.by_partition.setdefault(partition, {})

    def close(self, partition: int) -> None:
        self.size -= len(self.by_partition.pop(partition, {}))
        self._check_room()

    def put(self, partition: int, first_offset: int, tags: list[tuple[bytes, Any]]) -> None:
        waiting = self.by_partition.get(partition)
        if waiting is None or self.size + len(tags) > self.limit:
            return
        for index, tag in enumerate(tags):
            waiting[first_offset + index] = tag
        self.size += len(tags)

    def take(self, partition: int, offset: int, value: bytes | None) -> Any:
        """The record produced at (partition, offset) if it is still here and ``value`` is
        exactly what was produced there; else None (decode)."""
        waiting = self.by_partition.get(partition)
        if waiting:
            tag = waiting.pop(offset, None)
            if tag is not None:
                self.size -= 1
                self._check_room()
                if tag[0] == value:
                    self.taken += 1
                    return tag[1]
        self.decoded += 1
        return None

    def _check_room(self) -> None:
        if self.size <= self.limit // 4:
            self._room.set()

    async def wait_for_room(self, patience: float = 0.2) -> None:
        """Hold stage 1 back while half the limit waits, until stage 2 has taken it down to a
        quarter — but only while stage 2 is taking: when ``patience`` seconds pass without
        one record taken (stage 2 rebalancing, stalled, or not consuming this process's
        partitions), stage 1 goes on and the records it makes meanwhile are decoded."""
        while self.size >= self.limit // 2:
            before = self.size
            self._room.clear()
            self.waits += 1
            try:
                await asyncio.wait_for(self._room.wait(), patience)
            except TimeoutError:
                if self.size >= before:
                    return


def dead_letter(message: Any, source: str | None, rejection: Rejection, stage: str) -> bytes:
    return avro.encode(
        "DeadLetter",
        {
            "source": source,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": message.timestamp,
            "key": message.key,
            "payload": message.value or b"",
            "errorKind": rejection.kind,
            "errorMessage": rejection.message,
            "path": rejection.path or None,
            "stage": stage,
        },
    )


class NormalizeStage:
    """Stage 1. ``on_produced`` (if given) learns the highest offset written per partition."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str | Kafka,
        group: bool = True,
        on_produced: Callable[[int, int], None] | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.group = group
        self.normalizer = Normalizer(settings)
        self.stats = self.normalizer.stats
        self.on_produced = on_produced
        self.handoff = handoff
        self.positions: dict[TopicPartition, int] = {}
        self.ahead_resets: dict[TopicPartition, float] = {}
        self.ahead_reset_count = 0
        self._stop = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def stop(self) -> None:
        self._stop.set()

    def lag(self) -> int:
        return _lag(self._consumer, self.positions)

    def problems(self) -> list[str]:
        recent = sorted(
            f"{tp.topic}[{tp.partition}]"
            for tp, at in self.ahead_resets.items()
            if time.monotonic() - at < AHEAD_REPORT_SECONDS
        )
        if not recent:
            return []
        return [
            f"{', '.join(recent)}: committed offsets were ahead of the log (broker data lost); resumed from its start"
        ]

    async def _check_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Positions of newly assigned partitions from the consumer (so lag is right from the
        first second, not counted from offset 0), and the offsets-ahead policy: a position
        past the log's end (broker restarted empty, topic recreated) resumes from its start."""
        assigned = consumer.assignment()
        for tp in list(self.positions):
            if tp not in assigned:
                del self.positions[tp]
        for tp in assigned:
            if tp not in self.positions:
                with contextlib.suppress(Exception):
                    self.positions[tp] = await asyncio.wait_for(consumer.position(tp), 1.0)
                continue
            highwater = consumer.highwater(tp)
            if highwater is not None and self.positions[tp] > highwater:
                log.error(
                    "%s partition %d ends at offset %d, before the position %d: the broker lost data; resuming "
                    "from the start of the log",
                    tp.topic,
                    tp.partition,
                    highwater,
                    self.positions[tp],
                )
                self.ahead_resets[tp] = time.monotonic()
                self.ahead_reset_count += 1
                await consumer.seek_to_beginning(tp)
                self.positions[tp] = 0

    async def run(self, producer: AIOKafkaProducer, ready: asyncio.Event | None = None) -> None:
        settings = self.settings
        options = {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": 2000,
            **fetch_limits(settings.fetch_max_bytes),
            **group_timings(),
        }
        topics = list(RAW_TOPICS.values())
        if self.group:
            consumer = kafka.consumer(self.bootstrap, *topics, group_id=f"{settings.app_id}-normalize", **options)
            await consumer.start()
        else:
            consumer = kafka.consumer(self.bootstrap, **options)
            await consumer.start()
            consumer.assign([TopicPartition(t, p) for t in topics for p in range(settings.partitions)])
        self._consumer = consumer
        batcher = Batcher(producer, settings.partitions)
        skew = settings.clock_skew
        try:
            if ready is not None:
                ready.set()
            checked = 0.0
            while not self._stop.is_set():
                if self.handoff is not None:
                    await self.handoff.wait_for_room()
                batches = await consumer.getmany(timeout_ms=100, max_records=2000)
                if time.monotonic() - checked > 1.0:
                    checked = time.monotonic()
                    await self._check_positions(consumer)
                if not batches:
                    continue
                for tp, messages in batches.items():
                    source = tp.topic.removeprefix("raw.")
                    for message in messages:
                        await self._one(message, source, skew, batcher)
                acks = await batcher.flush()
                for tp, messages in batches.items():
                    self.positions[tp] = messages[-1].offset + 1
                handoff, on_produced = self.handoff, self.on_produced
                for meta, count, tags in acks:
                    if meta.topic == CONNECTOR_STATUS:
                        if on_produced is not None:
                            on_produced(meta.partition, meta.offset + count - 1)
                        if handoff is not None and tags is not None:
                            handoff.put(meta.partition, meta.offset, tags)
                if self.group:
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def _one(self, message: Any, source: str, skew: timedelta, batcher: Batcher) -> None:
        records, rejections = self.normalizer.handle(message, source, message.timestamp)
        for rejection in rejections:
            await batcher.add(
                DLQ,
                message.key or b"",
                dead_letter(message, source, rejection, "normalize"),
                message.timestamp,
                partition=message.partition % self.settings.partitions,
                headers=schema_headers("DeadLetter"),
            )
        partitions = self.settings.partitions
        for record in records:
            value = avro.encode("ConnectorStatus", record.__dict__)
            await batcher.add(
                CONNECTOR_STATUS,
                record.evseUid.encode(),
                value,
                message.timestamp,
                status_partition(record, partitions),
                schema_headers("ConnectorStatus"),
                (value, record) if self.handoff is not None else None,
            )


class Normalizer:
    """Stage 1's work on one raw record, whatever the engine: the canonical records to send
    to ``connector-status`` and the rejections to dead-letter, counted in :attr:`stats`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stage1Stats()
        self.skew = settings.clock_skew

    def handle(self, message: Any, source: str, timestamp_ms: int) -> tuple[list[Any], list[Rejection]]:
        stats = self.stats
        stats.rawRecords += 1
        stats.bySource[source] = stats.bySource.get(source, 0) + 1
        ctx = NormalizeContext(
            record_time=from_millis(timestamp_ms),
            max_skew=self.skew,
            key=message.key,
            headers=message.headers,
            max_connectors=self.settings.max_connectors_per_document,
            build_record=construct_status,
        )
        try:
            result = normalize_bytes(source, message.value or b"", ctx, self.settings.max_payload_bytes)
        except Rejection as rejection:
            self._count_rejection(rejection)
            return [], [rejection]
        for rejection in result.rejections:
            self._count_rejection(rejection)
        for reason, n in result.skipped.items():
            stats.skipped += n
            stats.skippedByReason[reason] = stats.skippedByReason.get(reason, 0) + n
        for name, n in ctx.warnings.counts.items():
            stats.warnings[name] = stats.warnings.get(name, 0) + n
        stats.statusRecords += len(result.records)
        return result.records, result.rejections

    def _count_rejection(self, rejection: Rejection) -> None:
        self.stats.rejected += 1
        self.stats.rejectedByKind[rejection.kind] = self.stats.rejectedByKind.get(rejection.kind, 0) + 1


def status_partition(record: Any, partitions: int) -> int | None:
    """The ``connector-status`` partition of a record when it is not its key's: OCPP records
    follow their charge point (``core.partition_key``); None = by key (the EVSE)."""
    if record.source is Source.ocpp or record.source == "ocpp":
        return partition_for(partition_key(record).encode(), partitions)
    return None


def _lag(consumer: AIOKafkaConsumer | None, positions: dict[TopicPartition, int]) -> int:
    """Records fetched-known to exist (fetch high watermark) but not processed yet."""
    if consumer is None:
        return 0
    total = 0
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            total += max(0, highwater - positions.get(tp, 0))
    return total


def group_timings() -> dict[str, int]:
    """Consumer-group timings that make joins take seconds on the embedded broker (STACK.md)."""
    return {
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "rebalance_timeout_ms": 10000,
        "max_poll_interval_ms": 60000,
    }


@dataclass(slots=True)
class PartitionState:
    """Everything stage 2 keeps for one input partition; persisted as one changelog unit."""

    partition: int
    store: PartitionStore = field(default_factory=MemoryStore)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    stream_time: int | None = None
    offset: int = -1  # last connector-status offset whose effects are in this state
    durable_offset: int = -1  # last offset whose outputs and changelog are acknowledged
    connectors: int = 0  # connector states held (for metrics; kept in step per record)

    def meta(self) -> bytes:
        return orjson.dumps(
            {
                "offset": self.offset,
                "counters": self.counters,
                "streamTime": self.stream_time,
                "connectors": self.connectors,
            }
        )

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.offset, self.stream_time = meta["offset"], meta["streamTime"]
        self.counters.update(meta["counters"])
        self.connectors = meta.get("connectors", self.connectors)


def policy_for(settings: Settings) -> Policy:
    """The window/staleness policy the settings ask for (seconds → the core's milliseconds)."""
    return Policy(
        window_ms=int(settings.window_seconds * 1000),
        grace_ms=int(settings.window_grace_seconds * 1000),
        staleness_ms=int(settings.staleness_seconds * 1000),
    )


class AggregateStage:
    """Stage 2. Owns a set of ``connector-status`` partitions and their state."""

    def __init__(
        self, settings: Settings, bootstrap: str | Kafka, group: bool = True, handoff: Handoff | None = None
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.group = group
        self.handoff = handoff
        self.policy = policy_for(settings)
        self.states: dict[int, PartitionState] = {}
        self.stores = OpenStores(
            StoreFactory(
                settings.store,
                settings.state_dir,
                settings.app_id,
                settings.worker_id or str(settings.web_port),
                settings.store_cache_evses,
                settings.store_memory_mb * 1024 * 1024,
            )
        )
        self.changelog = changelog_topic(settings.app_id)
        # filled by the standby assignor on each rebalance; it reports what this worker has
        self.standby_plan = StandbyPlan(
            owned=lambda: set(self.states) | set(self.unavailable), held=lambda: set(self.stores.by_partition)
        )
        self.standby: StandbyTailer | None = None
        self._standby_task: asyncio.Task[None] | None = None
        self.on_batch: list[Callable[[float, list[int]], Any]] = []  # (seconds, record timestamps)
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self.restored_records = 0
        #: assigned partitions whose state could not be opened: paused, never committed, retried
        self.unavailable: dict[int, str] = {}
        self._retry: dict[int, tuple[float, float]] = {}  # partition → (next attempt, backoff)
        #: partitions whose input log turned out shorter than their state (data lost on the
        #: broker), and when: reported in health for a while
        self.ahead_resets: dict[int, float] = {}
        self.ahead_reset_count = 0
        self.unreadable_changelog = 0

    def stop(self) -> None:
        self._stop.set()

    # -- partitions whose state cannot be opened -----------------------------------------
    async def take_over(self, partitions: list[int]) -> None:
        """Restore and start consuming ``partitions``; any that cannot be opened are paused
        (no fetch, no processing, no commit) and retried with backoff — never skipped."""
        consumer = self._consumer
        assert consumer is not None
        try:
            await self.restore(partitions)
        except Exception as exc:
            if len(partitions) > 1:  # find out which ones: one at a time
                for partition in partitions:
                    await self.take_over([partition])
                return
            self._defer(partitions[0], exc)
            return
        for partition in partitions:
            tp = TopicPartition(CONNECTOR_STATUS, partition)
            consumer.seek(tp, self.states[partition].offset + 1)
            if partition in self.unavailable:
                log.warning("partition %d: state opened after all, processing it again", partition)
                del self.unavailable[partition]
                self._retry.pop(partition, None)
                consumer.resume(tp)

    def _defer(self, partition: int, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}"
        if self.unavailable.get(partition) != why:
            log.error(
                "partition %d of %s: its state cannot be opened, not processing it: %s",
                partition,
                CONNECTOR_STATUS,
                why,
            )
        self.unavailable[partition] = why
        self.states.pop(partition, None)
        self.stores.close(partition)
        _, backoff = self._retry.get(partition, (0.0, 0.5))
        backoff = min(backoff * 2, 30.0)
        self._retry[partition] = (time.monotonic() + backoff, backoff)
        if self._consumer is not None:
            self._consumer.pause(TopicPartition(CONNECTOR_STATUS, partition))

    async def _retry_unavailable(self) -> None:
        now = time.monotonic()
        due = [p for p, (at, _) in self._retry.items() if at <= now and p in self.unavailable]
        for partition in due:
            await self.take_over([partition])

    def forget(self, partition: int) -> None:
        """The partition went to another worker."""
        self.unavailable.pop(partition, None)
        self._retry.pop(partition, None)
        if self.handoff is not None:
            self.handoff.close(partition)
        if self.states.pop(partition, None) is not None:
            self.stores.close(partition)

    # -- the input log lost data (broker restarted empty, topic recreated) ---------------
    async def _check_log_ahead(self, consumer: AIOKafkaConsumer) -> None:
        """A partition whose state reflects offsets the log no longer has: the documented policy
        (README "Health") is to rebuild its state from the changelog as it now exists and resume
        from the new log's start, instead of skipping everything as already seen."""
        for partition, state in list(self.states.items()):
            tp = TopicPartition(CONNECTOR_STATUS, partition)
            highwater = consumer.highwater(tp)
            if highwater is None or state.offset < highwater:
                continue
            log.error(
                "partition %d of %s ends at offset %d but its state reflects offset %d: the broker lost data "
                "(restarted empty? topic recreated?). Rebuilding the state from the changelog and resuming "
                "from the start of the new log.",
                partition,
                CONNECTOR_STATUS,
                highwater,
                state.offset,
            )
            self.ahead_resets[partition] = time.monotonic()
            self.ahead_reset_count += 1
            await ensure_topics(
                self.bootstrap,
                topic_specs(self.settings.app_id, int(self.settings.window_retention_seconds * 1000)),
                self.settings.partitions,
                self.settings.replication_factor,
            )
            self.states.pop(partition, None)
            store = self.stores.open(partition)
            store.wipe()
            await self.restore([partition])
            rebuilt = self.states[partition]
            rebuilt.offset = rebuilt.durable_offset = -1
            await consumer.seek_to_beginning(tp)

    def problems(self) -> list[str]:
        found = [
            f"partition {p} of {CONNECTOR_STATUS} is assigned to this worker but its state cannot be opened ({why});"
            " not processed, offsets not committed, retrying"
            for p, why in sorted(self.unavailable.items())
        ]
        recent = sorted(p for p, at in self.ahead_resets.items() if time.monotonic() - at < AHEAD_REPORT_SECONDS)
        if recent:
            found.append(
                f"partition(s) {recent} of {CONNECTOR_STATUS}: committed state was ahead of the log (broker data lost);"
                " state rebuilt from the changelog, resumed from the new log's start"
            )
        return found

    # -- recovery ------------------------------------------------------------------------
    async def restore(self, partitions: list[int]) -> None:
        """Rebuild partition states: the local store's checkpoint (rocksdb://) plus the
        changelog from there to its fetch high watermark, streamed (constant memory)."""
        states, starts = {}, {}
        for partition in partitions:
            if self.handoff is not None:  # records stage 1 produces from now on can be handed over
                self.handoff.open(partition)
            store = self.stores.open(partition)
            state = PartitionState(partition, store)
            changelog_offset, meta = store.checkpoint()
            if meta is not None:
                state.load_meta(meta)
            states[partition], starts[partition] = state, changelog_offset + 1
        ahead = await self._replay_changelog(states, starts)
        if ahead:  # local databases past the changelog's end (topic recreated): rebuild them
            for partition in ahead:
                log.warning("local state of partition %d is ahead of the changelog: rebuilding it", partition)
                states[partition].store.wipe()
                states[partition] = PartitionState(partition, states[partition].store)
                starts[partition] = 0
            # all partitions again: a replay that stopped on an out-of-range error may have left
            # the others half-way, and re-applying changelog records is idempotent
            await self._replay_changelog(states, starts)
        for partition, state in states.items():
            if not self.stores.persistent:
                state.connectors = sum(len(evse.connectors) for evse in state.store.values())
            state.durable_offset = state.offset
            self.states[partition] = state
            log.info(
                "restored partition %d: %d EVSEs, offset %d, changelog replayed from offset %d",
                partition,
                len(state.store),
                state.offset,
                starts[partition],
            )

    async def _replay_changelog(self, states: dict[int, PartitionState], starts: dict[int, int]) -> list[int]:
        """Apply the changelog from ``starts`` to its end; returns partitions whose local
        checkpoint lies beyond the changelog's end."""
        reader = kafka.consumer(
            self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="none",
            **DRAIN_FETCH,
            **fetch_limits(self.settings.fetch_max_bytes),
        )
        await reader.start()
        last_offsets: dict[int, int] = {}
        ahead: list[int] = []

        def apply(partition: int, messages: list[Any]) -> None:
            state = states[partition]
            store = state.store
            for message in messages:
                self.restored_records += 1
                try:
                    if message.key == META_KEY:
                        state.load_meta(orjson.loads(message.value))
                    else:
                        check_state_record(message.key, message.value)
                        store.load_raw(message.key, message.value)
                except Exception as exc:  # not a changelog record: skip it, never stop a restore
                    self.unreadable_changelog += 1
                    if self.unreadable_changelog <= 3:
                        log.warning(
                            "skipping an unreadable changelog record at partition %d offset %d: %s: %s",
                            partition,
                            message.offset,
                            type(exc).__name__,
                            exc,
                        )
            last_offsets[partition] = messages[-1].offset

        try:
            tps = [TopicPartition(self.changelog, p) for p in states]
            reader.assign(tps)
            for tp in tps:
                reader.seek(tp, starts[tp.partition])
            try:
                await drain(reader, tps, on_records=apply)
            except OffsetOutOfRangeError as exc:
                return sorted({tp.partition for tp in exc.args[0]} if exc.args else set(starts))
            for tp in tps:
                highwater = reader.highwater(tp)
                if starts[tp.partition] > 0 and (highwater or 0) < starts[tp.partition]:
                    ahead.append(tp.partition)
        finally:
            await reader.stop()
        for partition, state in states.items():
            if partition in last_offsets and partition not in ahead:
                state.store.commit({}, state.meta(), last_offsets[partition])
        return ahead

    # -- processing ----------------------------------------------------------------------
    async def run(self, producer: AIOKafkaProducer, ready: asyncio.Event | None = None) -> None:
        settings = self.settings
        options = {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": 4000,
            **fetch_limits(settings.fetch_max_bytes),
            **group_timings(),
        }
        if self.group:
            if settings.standby_replicas:
                options["partition_assignment_strategy"] = (
                    standby_assignor(settings.standby_replicas, self.standby_plan),
                )
                self.standby = StandbyTailer(self.bootstrap, self.changelog, self.stores, settings.fetch_max_bytes)
                await self.standby.start()
                self._standby_task = asyncio.create_task(self.standby.run(), name="standby")
            consumer = kafka.consumer(self.bootstrap, group_id=f"{settings.app_id}-aggregate", **options)
            self._consumer = consumer
            await consumer.start()
            consumer.subscribe([CONNECTOR_STATUS], listener=_Rebalance(self))
        else:
            consumer = kafka.consumer(self.bootstrap, **options)
            self._consumer = consumer
            await consumer.start()
            partitions = list(range(settings.partitions))
            consumer.assign([TopicPartition(CONNECTOR_STATUS, p) for p in partitions])
            await self.take_over(partitions)
        batcher = Batcher(producer, settings.partitions)
        try:
            if ready is not None:
                ready.set()
            checked = 0.0
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=4000)
                if time.monotonic() - checked > 1.0:
                    checked = time.monotonic()
                    async with self._lock:
                        await self._retry_unavailable()
                        await self._check_log_ahead(consumer)
                if not batches:
                    continue
                started = time.perf_counter()
                async with self._lock:
                    await self._check_log_ahead(consumer)
                    await self._process(batches, batcher, producer)
                    if self.group:
                        await self._commit(consumer)
                if self.on_batch:
                    elapsed = time.perf_counter() - started
                    stamps = [m.timestamp for messages in batches.values() for m in messages]
                    for callback in self.on_batch:
                        callback(elapsed, stamps)
        finally:
            await consumer.stop()
            if self.standby is not None and self._standby_task is not None:
                self.standby.stop()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(self._standby_task, 10)
            self.states.clear()
            self.stores.close_all()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what each partition with state has durably processed — only those: a paused
        partition (state not opened) keeps its committed offset where it was."""
        offsets = {
            TopicPartition(CONNECTOR_STATUS, p): OffsetAndMetadata(s.durable_offset + 1, "")
            for p, s in self.states.items()
            if s.durable_offset >= 0
        }
        if offsets:
            await consumer.commit(offsets)

    async def _process(
        self, batches: dict[TopicPartition, list[Any]], batcher: Batcher, producer: AIOKafkaProducer
    ) -> None:
        dirty: dict[int, dict[str, EvseState]] = {}
        for tp, messages in batches.items():
            state = self.states.get(tp.partition)
            if state is None:
                continue  # revoked while fetching
            touched = dirty.setdefault(tp.partition, {})
            for message in messages:
                if message.offset <= state.offset:
                    continue  # already reflected in the restored state
                await self._apply(state, message, touched, batcher)
                state.offset = message.offset
        for partition, evses in dirty.items():
            stream_time = self.states[partition].stream_time
            for uid, evse in evses.items():
                view = availability(evse, stream_time, self.policy)
                await batcher.add(
                    EVSE_AVAILABILITY,
                    uid.encode(),
                    avro.encode("EvseAvailability", view),
                    stream_time,
                    partition=partition,
                    headers=schema_headers("EvseAvailability"),
                )
        await batcher.flush()  # outputs first: a crash now re-emits, never loses
        serialized: dict[int, dict[str, bytes | None]] = {}
        for partition, evses in dirty.items():
            state = self.states[partition]
            values = serialized[partition] = {uid: orjson.dumps(evse.to_json()) for uid, evse in evses.items()}
            for uid, value in values.items():
                await batcher.add(self.changelog, uid.encode(), value, state.stream_time, partition=partition)
            await batcher.add(self.changelog, META_KEY, state.meta(), state.stream_time, partition=partition)
        acks = await batcher.flush()
        changelog_ends: dict[int, int] = {}
        for meta, count, _ in acks:
            end = meta.offset + count - 1
            if changelog_ends.get(meta.partition, -1) < end:
                changelog_ends[meta.partition] = end
        for partition in dirty:
            state = self.states[partition]
            state.store.commit(serialized[partition], state.meta(), changelog_ends[partition])
            state.durable_offset = state.offset

    async def _apply(
        self,
        state: PartitionState,
        message: Any,
        touched: dict[str, EvseState],
        batcher: Batcher,
    ) -> None:
        record = None if self.handoff is None else self.handoff.take(message.partition, message.offset, message.value)
        try:
            if record is None:
                record = construct_status(avro.decode("ConnectorStatus", message.value or b""))
        except Exception as exc:  # only stage 1 should write here; anything else is dead-lettered
            state.counters["rejected"] = state.counters.get("rejected", 0) + 1
            rejection = Rejection("malformed_avro", f"not a ConnectorStatus record: {type(exc).__name__}: {exc}")
            await batcher.add(
                DLQ,
                message.key or b"",
                dead_letter(message, None, rejection, "aggregate"),
                message.timestamp,
                partition=message.partition,
                headers=schema_headers("DeadLetter"),
            )
            return
        if state.stream_time is None or message.timestamp > state.stream_time:
            state.stream_time = message.timestamp
        if record.scope == Scope.CHARGE_POINT:  # every known EVSE of the charge point, in turn
            station = record.evseUid
            targets = [uid for uid in state.store.uids_with_prefix(station + ":") if charge_point_evse(uid, station)]
            if not targets:
                state.counters["evseScopeUnmatched"] += 1
            for uid in targets:
                await self._fold(state, uid, record, message, touched, batcher)
            return
        await self._fold(state, record.evseUid, record, message, touched, batcher)

    async def _fold(
        self,
        state: PartitionState,
        uid: str,
        record: Any,
        message: Any,
        touched: dict[str, EvseState],
        batcher: Batcher,
    ) -> None:
        """Apply one record to EVSE ``uid`` of this partition and queue what it emits."""
        evse = touched.get(uid) or state.store.get(uid)
        created = evse is None
        if evse is None:
            evse = new_evse(record)
        known = len(evse.connectors)
        outcome = apply_record(evse, record, self.policy)
        for name, n in outcome.counters.items():
            state.counters[name] = state.counters.get(name, 0) + n
        if created:
            if not evse.connectors:
                return  # an EVSE-wide update for an EVSE we never saw: nothing to keep
            state.store.put(uid, evse)
        state.connectors += len(evse.connectors) - known
        if outcome.evse_changed or outcome.changes or outcome.closed_windows:
            touched[uid] = evse
        key = uid.encode()
        for change in outcome.changes:
            await batcher.add(
                CONNECTOR_CHANGES,
                key,
                avro.encode("ConnectorChange", change_record(change)),
                message.timestamp,
                partition=message.partition,
                headers=schema_headers("ConnectorChange"),
            )
        for window in outcome.closed_windows:
            await batcher.add(
                EVSE_AVAILABILITY_WINDOWED,
                key,
                avro.encode("EvseAvailabilityWindow", window),
                message.timestamp,
                partition=message.partition,
                headers=schema_headers("EvseAvailabilityWindow"),
            )

    def counters(self) -> dict[str, int]:
        total = dict.fromkeys(COUNTERS, 0)
        for state in self.states.values():
            for name, n in state.counters.items():
                total[name] = total.get(name, 0) + n
        return total

    def stream_time(self) -> int | None:
        times = [s.stream_time for s in self.states.values() if s.stream_time is not None]
        return max(times) if times else None

    def processed_offsets(self) -> dict[int, int]:
        """Per partition, the last input offset whose outputs are all acknowledged by Kafka
        (what "processed" means to anyone who then reads the output topics)."""
        return {p: s.durable_offset for p, s in self.states.items()}

    def lag(self) -> int:
        positions = {TopicPartition(CONNECTOR_STATUS, p): s.offset + 1 for p, s in self.states.items()}
        return _lag(self._consumer, positions)


class OpenStores:
    """The partition stores this worker has open (owned partitions)."""

    def __init__(self, factory: StoreFactory) -> None:
        self.factory = factory
        self.by_partition: dict[int, PartitionStore] = {}

    @property
    def persistent(self) -> bool:
        return self.factory.persistent

    def open(self, partition: int) -> PartitionStore:
        store = self.by_partition.get(partition)
        if store is None:
            store = self.by_partition[partition] = self.factory.open(partition)
        return store

    def close(self, partition: int) -> None:
        store = self.by_partition.pop(partition, None)
        if store is not None:
            store.close()

    def close_all(self) -> None:
        for partition in list(self.by_partition):
            self.close(partition)


def change_record(change: Any) -> dict[str, Any]:
    live, standard, fmt, power_type, max_kw, volts, amps = change.state.attributes
    return {
        "connectorUid": change.connector_uid,
        "evseUid": change.evse_uid,
        "source": change.source,
        "changeKind": change.kind,
        "status": change.status,
        "previousStatus": change.previous_status,
        "rawStatus": change.state.raw_status,
        "connectorId": change.state.connector_id,
        "live": bool(live),
        "standard": standard,
        "format": fmt,
        "powerType": power_type,
        "maxPowerKw": max_kw,
        "voltage": volts,
        "amperage": amps,
        "powerClass": change.state.power_class,
        "eventTime": change.event_time,
        "previousEventTime": change.previous_event_time,
        "recordTime": change.record_time,
    }


class _Rebalance(ConsumerRebalanceListener):
    """Restore state for newly assigned partitions; drop it for revoked ones."""

    def __init__(self, stage: AggregateStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.stage._lock:
            for tp in revoked:
                self.stage.forget(tp.partition)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Never raises: a partition that cannot be restored is paused and retried (an
        exception here would leave aiokafka consuming it with no state)."""
        partitions = [tp.partition for tp in assigned]
        standby = self.stage.standby
        if standby is not None:  # stop following what this worker now owns, before restoring it
            owned = set(partitions) | set(self.stage.states)
            with contextlib.suppress(Exception):
                await standby.set_partitions(self.stage.standby_plan.partitions - owned, keep_open=owned)
        if partitions:
            await self.stage.take_over(partitions)


@contextlib.asynccontextmanager
async def producer_for(target: str | Kafka, **options: Any) -> Any:
    producer = kafka.producer(target, linger_ms=5, max_batch_size=1_048_576, max_request_size=4_194_304, **options)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


# --- both stages in one process: the native engine ------------------------------------------


class NativeEngine:
    """Both native stages in this process against one broker (the embedded default or any
    Kafka): ``group=True`` in consumer groups (``plugstream worker``), else with every
    partition assigned directly (``up``, ``replay --embedded``: no group join to wait for)."""

    name: ClassVar[str] = "native"

    def __init__(self, settings: Settings, bootstrap: str | Kafka, group: bool = False) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.group = group
        self.produced: dict[int, int] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.handoff = Handoff()
        self.normalize = NormalizeStage(settings, bootstrap, group, on_produced=self._produced, handoff=self.handoff)
        self.aggregate = AggregateStage(settings, bootstrap, group, handoff=self.handoff)
        self.policy = self.aggregate.policy
        self._producer_cm: Any = None

    @property
    def on_batch(self) -> list[Callable[[float, list[int]], Any]]:
        return self.aggregate.on_batch

    def _produced(self, partition: int, offset: int) -> None:
        self.produced[partition] = max(self.produced.get(partition, -1), offset)

    async def start(self) -> None:
        self.aggregate.stores.factory.acquire()  # a second worker on this state directory stops here
        await ensure_topics(
            self.bootstrap,
            topic_specs(self.settings.app_id, int(self.settings.window_retention_seconds * 1000)),
            self.settings.partitions,
            self.settings.replication_factor,
        )
        self._producer_cm = producer_for(self.bootstrap)
        producer = await self._producer_cm.__aenter__()
        ready = [asyncio.Event(), asyncio.Event()]
        self.tasks = [
            asyncio.create_task(self.normalize.run(producer, ready[0]), name="normalize"),
            asyncio.create_task(self.aggregate.run(producer, ready[1]), name="aggregate"),
        ]
        waiter = asyncio.ensure_future(asyncio.gather(ready[0].wait(), ready[1].wait()))
        done, _ = await asyncio.wait([*self.tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for task in self.tasks:
            if task in done:
                task.result()  # a stage failed while starting: raise it here

    async def wait_processed(self, raw_end_offsets: dict[tuple[str, int], int], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_failed()
            stage1_done = all(
                self.normalize.positions.get(TopicPartition(t, p), 0) >= end for (t, p), end in raw_end_offsets.items()
            )
            if stage1_done:
                offsets = self.aggregate.processed_offsets()
                if all(offsets.get(p, -1) >= last for p, last in self.produced.items()):
                    return
            await asyncio.sleep(0.02)
        raise TimeoutError("pipeline did not finish processing in time")

    def _raise_if_failed(self) -> None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        self.normalize.stop()
        self.aggregate.stop()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        if self._producer_cm is not None:
            await self._producer_cm.__aexit__(None, None, None)
            self._producer_cm = None
        self.aggregate.stores.factory.release()

    def lag(self) -> dict[str, int]:
        return {"normalize": self.normalize.lag(), "aggregate": self.aggregate.lag()}

    def partitions_owned(self) -> list[int]:
        return sorted(self.aggregate.states)

    def stream_time(self) -> int | None:
        return self.aggregate.stream_time()

    def problems(self) -> list[str]:
        found = self.aggregate.problems() + self.normalize.problems()
        for task in self.tasks:
            if task.done():
                error = None if task.cancelled() else task.exception()
                why = f": {type(error).__name__}: {error}" if error else ""
                found.append(f"stage {task.get_name()} stopped{why}")
        return found

    def table_sizes(self) -> dict[str, int]:
        states = self.aggregate.states.values()
        return {"evse_state": sum(len(s.store) for s in states), "connector_state": sum(s.connectors for s in states)}

    def stats(self) -> dict[str, Any]:
        counters = self.aggregate.counters()
        s1 = self.normalize.stats
        return {
            "engine": self.name,
            "accepted": counters["accepted"],
            "duplicates": counters["duplicates"],
            "stale": counters["stale"],
            "skipped": s1.skipped,
            "rejected": s1.rejected + counters.get("rejected", 0),
            "late": counters["late"],
            "removedBySnapshot": counters["removedBySnapshot"],
            "evseScopeUnmatched": counters["evseScopeUnmatched"],
            "rawRecords": s1.rawRecords,
            "statusRecords": s1.statusRecords,
            "skippedByReason": s1.skippedByReason,
            "rejectedByKind": _with_stage2_rejections(s1.rejectedByKind, counters.get("rejected", 0)),
            "warnings": s1.warnings,
            "bySource": s1.bySource,
        }

    def evses(self) -> list[dict[str, Any]]:
        """Final per-EVSE table, staleness against the newest record timestamp processed anywhere."""
        stream_time = self.aggregate.stream_time()
        views = [
            availability(evse, stream_time, self.policy)
            for state in self.aggregate.states.values()
            for evse in state.store.values()
        ]
        return sorted((avro.as_published("EvseAvailability", v) for v in views), key=lambda v: v["evseUid"])


def _with_stage2_rejections(by_kind: dict[str, int], stage2: int) -> dict[str, int]:
    """Stage 2 rejects only ``connector-status`` records that are not Avro (``malformed_avro``)."""
    if not stage2:
        return by_kind
    return {**by_kind, "malformed_avro": by_kind.get("malformed_avro", 0) + stage2}
