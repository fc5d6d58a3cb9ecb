"""The other contestants of ``bench/pipeline.py``, each run as its own process:

    python bench/contestants.py plain BOOTSTRAP PARTITIONS
    python bench/contestants.py quix  BOOTSTRAP PARTITIONS STATE_DIR

Both do plugstream's job with plugstream's own rules (adapters, ``streams.core``) and write
the same output topics (``connector-status``, ``connector-changes``, ``evse-availability``,
``evse-availability-windowed``, ``plugstream.dlq``, Avro from the same schemas):

* ``plain`` — the cheapest honest implementation: one aiokafka consume → normalize →
  dedupe/aggregate → produce loop, EVSE states in a dict, outputs batched per partition,
  availability coalesced per EVSE per batch, commit per batch. No changelog, no stage hop,
  no recovery: a crash loses the state.
* ``quix`` — Quix Streams 3.28 as its documentation shows a stateful job: the raw topics
  normalized (``apply(expand=True)``), ``group_by`` the EVSE (a repartition topic), a
  stateful ``apply`` folding each record into the EVSE's state (RocksDB + changelog topic),
  the outputs sent with ``to_topic``. Needs ``pip install -e ".[bench]"``.

They run until killed; the bench watches their consumer group's committed offsets.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams import avro
from streams.adapters import NormalizeContext, Rejection, normalize_bytes
from streams.config import Settings
from streams.core import EvseState, apply_record, availability, new_evse, partition_key
from streams.engine import Batcher, change_record, dead_letter, partition_for, policy_for, producer_for
from streams.models import construct_status
from streams.timeparse import from_millis
from streams.topics import (
    CONNECTOR_CHANGES,
    CONNECTOR_STATUS,
    DLQ,
    EVSE_AVAILABILITY,
    EVSE_AVAILABILITY_WINDOWED,
    RAW_TOPICS,
    fetch_limits,
)

GROUP = {"plain": "bench-plain", "quix": "bench-quix"}


async def plain(bootstrap: str, partitions: int) -> None:
    from aiokafka import AIOKafkaConsumer

    policy = policy_for(Settings(partitions=partitions))
    evses: dict[str, EvseState] = {}
    stream_time: dict[int, int] = {}
    consumer = AIOKafkaConsumer(
        *RAW_TOPICS.values(),
        bootstrap_servers=bootstrap,
        group_id=GROUP["plain"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=4000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        **fetch_limits(1_048_576),
    )
    await consumer.start()
    async with producer_for(bootstrap) as producer:
        batcher = Batcher(producer, partitions)
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=4000)
            if not batches:
                continue
            touched: dict[str, tuple[int, EvseState]] = {}
            for tp, messages in batches.items():
                source = tp.topic.removeprefix("raw.")
                for message in messages:
                    ctx = NormalizeContext(record_time=from_millis(message.timestamp), key=message.key)
                    try:
                        result = normalize_bytes(source, message.value or b"", ctx)
                    except Rejection as rejection:
                        await batcher.add(DLQ, message.key, dead_letter(message, source, rejection, "normalize"), None)
                        continue
                    for rejection in result.rejections:
                        await batcher.add(DLQ, message.key, dead_letter(message, source, rejection, "normalize"), None)
                    for record in result.records:
                        uid = record.evseUid
                        key = uid.encode()
                        partition = partition_for(partition_key(record).encode(), partitions)
                        value = avro.encode("ConnectorStatus", record.__dict__)
                        await batcher.add(CONNECTOR_STATUS, key, value, message.timestamp, partition=partition)
                        if stream_time.get(partition, 0) < message.timestamp:
                            stream_time[partition] = message.timestamp
                        evse = evses.get(uid)
                        if evse is None:
                            evse = evses[uid] = new_evse(record)
                        outcome = apply_record(evse, record, policy)
                        if outcome.evse_changed or outcome.changes or outcome.closed_windows:
                            touched[uid] = (partition, evse)
                        for change in outcome.changes:
                            value = avro.encode("ConnectorChange", change_record(change))
                            await batcher.add(CONNECTOR_CHANGES, key, value, message.timestamp, partition=partition)
                        for window in outcome.closed_windows:
                            value = avro.encode("EvseAvailabilityWindow", window)
                            await batcher.add(EVSE_AVAILABILITY_WINDOWED, key, value, message.timestamp, partition)
            for uid, (partition, evse) in touched.items():
                if evse.connectors:
                    value = avro.encode("EvseAvailability", availability(evse, stream_time[partition], policy))
                    await batcher.add(EVSE_AVAILABILITY, uid.encode(), value, stream_time[partition], partition)
            await batcher.flush()
            await consumer.commit()


def quix(bootstrap: str, partitions: int, state_dir: str) -> None:
    try:
        from quixstreams import Application
    except ImportError:
        raise SystemExit("quixstreams is not installed: pip install -e '.[bench]'") from None
    import logging

    from quixstreams.models.serializers import Serializer

    class Payload(Serializer):
        """Outputs flow as (topic, key, Avro bytes); the topic's serializer writes the bytes."""

        def __call__(self, value: Any, ctx: Any) -> bytes:
            return value[2]

    policy = policy_for(Settings(partitions=partitions))
    app = Application(
        broker_address=bootstrap,
        consumer_group=GROUP["quix"],
        auto_offset_reset="earliest",
        state_dir=state_dir,
        commit_interval=float(os.environ.get("QUIX_COMMIT_INTERVAL", "0.5")),  # default 5 s: the bench watches commits
        loglevel=logging.WARNING,
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        producer_extra_config={"linger.ms": 5},
    )
    outputs = {
        name: app.topic(name, key_serializer="str", value_serializer=Payload())
        for name in (CONNECTOR_STATUS, CONNECTOR_CHANGES, EVSE_AVAILABILITY, EVSE_AVAILABILITY_WINDOWED)
    }

    def normalizer(source: str) -> Any:
        def normalize(value: bytes, key: Any, timestamp: int, headers: Any) -> list[dict[str, Any]]:
            ctx = NormalizeContext(record_time=from_millis(timestamp), key=key)
            try:
                result = normalize_bytes(source, value or b"", ctx)
            except Rejection:
                return []
            return [  # JSON for the repartition topic: times as epoch ms
                {
                    **record.__dict__,
                    "eventTime": int(record.eventTime.timestamp() * 1000),
                    "recordTime": timestamp,
                    "_partitionKey": partition_key(record),
                }
                for record in result.records
            ]

        return normalize

    frames = []
    for source, name in RAW_TOPICS.items():
        topic = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        frames.append(app.dataframe(topic).apply(normalizer(source), metadata=True, expand=True))
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.group_by(lambda record: record["_partitionKey"], name="evse")

    def fold(record: dict[str, Any], state: Any) -> list[tuple[str, str, bytes]]:
        record.pop("_partitionKey")
        uid = record["evseUid"]
        record["eventTime"], record["recordTime"] = from_millis(record["eventTime"]), from_millis(record["recordTime"])
        out = [(CONNECTOR_STATUS, uid, avro.encode("ConnectorStatus", record))]
        canonical = construct_status(record)
        stored = state.get(uid)
        evse = new_evse(canonical) if stored is None else EvseState.from_json(stored)
        outcome = apply_record(evse, canonical, policy)
        for change in outcome.changes:
            out.append((CONNECTOR_CHANGES, uid, avro.encode("ConnectorChange", change_record(change))))
        for window in outcome.closed_windows:
            out.append((EVSE_AVAILABILITY_WINDOWED, uid, avro.encode("EvseAvailabilityWindow", window)))
        if evse.connectors:
            state.set(uid, evse.to_json())
            if outcome.evse_changed or outcome.changes or outcome.closed_windows:
                view = availability(evse, int(record["recordTime"].timestamp() * 1000), policy)
                out.append((EVSE_AVAILABILITY, uid, avro.encode("EvseAvailability", view)))
        return out

    sdf = sdf.apply(fold, stateful=True, expand=True)
    sdf.to_topic(lambda value, key, timestamp, headers: outputs[value[0]], key=lambda value: value[1])
    app.run()


if __name__ == "__main__":
    kind, bootstrap, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "plain":
        asyncio.run(plain(bootstrap, partitions))
    elif kind == "quix":
        quix(bootstrap, partitions, sys.argv[4])
    else:
        raise SystemExit(f"unknown contestant {kind!r}; valid: plain, quix")
