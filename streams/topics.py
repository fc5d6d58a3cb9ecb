"""Every topic the pipeline uses, created explicitly from this one place (DESIGN §1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from . import kafka
from .kafka import Kafka
from .vocabulary import Source

RAW_TOPICS = {source.value: f"raw.{source.value}" for source in Source}
CONNECTOR_STATUS = "connector-status"
CONNECTOR_CHANGES = "connector-changes"
EVSE_AVAILABILITY = "evse-availability"
EVSE_AVAILABILITY_WINDOWED = "evse-availability-windowed"
DLQ = "plugstream.dlq"


#: Fetch settings for readers that read a topic to its end: the broker would otherwise hold
#: each fetch of an empty partition for fetch_max_wait_ms (500 ms) before reporting its
#: high watermark, which made every start-up (changelog restore) wait for nothing.
DRAIN_FETCH = {"fetch_max_wait_ms": 20}


def fetch_limits(max_bytes: int) -> dict[str, int]:
    """Consumer options that bound what a fetch may buffer.

    aiokafka keeps one fetch response per partition until it is consumed; on a backlog every
    response is full. Kafka honours ``max_partition_fetch_bytes`` (default 1 MiB) *and*
    ``fetch_max_bytes`` (default 50 MiB); the embedded broker honours only the latter and
    returns ~5 MiB per partition otherwise, so a worker with 20 partitions buffered ~100 MiB
    of input (measured with tracemalloc during ``bench/soak.py``). With 1 MiB, stage 1's 20
    raw partitions still held ~17 MiB of fetched input (8-10 of its 2,000-record batches
    ahead); the default 256 KiB keeps ~5 MiB, still several batches ahead, and took the
    rocksdb:// soak's peak from 184 to 163 MiB at the same throughput.
    """
    return {"fetch_max_bytes": max_bytes, "max_partition_fetch_bytes": min(max_bytes, 1_048_576)}


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-evse-state-changelog"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool = False
    retention_ms: int | None = None

    def config(self) -> dict[str, str]:
        config = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


def topic_specs(app_id: str, window_retention_ms: int) -> list[TopicSpec]:
    return [
        *(TopicSpec(name) for name in RAW_TOPICS.values()),
        TopicSpec(CONNECTOR_STATUS),
        TopicSpec(CONNECTOR_CHANGES),
        TopicSpec(EVSE_AVAILABILITY, compacted=True),
        TopicSpec(EVSE_AVAILABILITY_WINDOWED, retention_ms=window_retention_ms),
        TopicSpec(DLQ),
        TopicSpec(changelog_topic(app_id), compacted=True),
    ]


async def ensure_topics(
    target: str | Kafka, specs: list[TopicSpec], partitions: int, replication: int = 1
) -> list[str]:
    """Create missing topics; returns the names created. Existing topics are left alone."""
    admin = kafka.admin(target)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in specs if s.name not in existing]
        for spec in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(spec.name, partitions, replication, topic_configs=spec.config())])
        return [s.name for s in wanted]
    finally:
        await admin.close()


async def read_to_end(
    target: str | Kafka, topic: str, partitions: list[int] | None = None, idle_ms: int = 300
) -> dict[int, list]:
    """Every record of ``topic`` from the beginning to the current end, per partition.

    The end is taken from fetch high watermarks, not ListOffsets: the embedded broker's
    ListOffsets is wrong for multi-record batches (STACK.md), fetch high watermarks are not.
    """
    consumer = kafka.consumer(target, enable_auto_commit=False, auto_offset_reset="earliest", **DRAIN_FETCH)
    await consumer.start()
    try:
        if partitions is None:
            found = consumer.partitions_for_topic(topic)
            if not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic) or set()
            partitions = sorted(found)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        return await drain(consumer, tps, idle_ms)
    finally:
        await consumer.stop()


async def drain(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    idle_ms: int = 300,
    on_records: Callable[[int, list[Any]], None] | None = None,
) -> dict[int, list]:
    """Fetch until each partition's position reaches its fetch high watermark.

    Returns the records per partition, or hands each fetched chunk to ``on_records`` (and
    keeps nothing) so a large changelog restores in constant memory.
    """
    records: dict[int, list] = {tp.partition: [] for tp in tps}
    pending = set(tps)
    idle_rounds = 0
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=idle_ms, max_records=5000)
        for tp, messages in batch.items():
            if on_records is None:
                records[tp.partition].extend(messages)
            else:
                on_records(tp.partition, messages)
        progressed = bool(batch)
        for tp in list(pending):
            highwater = consumer.highwater(tp)
            if highwater is not None and await consumer.position(tp) >= highwater:
                pending.discard(tp)
        if not progressed:
            idle_rounds += 1
            if idle_rounds >= 3 and all(consumer.highwater(tp) in (None, 0) for tp in pending):
                break  # empty partitions report no high watermark until a fetch returns
            await asyncio.sleep(0)
        else:
            idle_rounds = 0
    return records
