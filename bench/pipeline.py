"""End-to-end pipeline throughput and latency vs. plain aiokafka loops, same broker, same run.

    python bench/pipeline.py [--records 20000] [--evses 500] [--latency-records 2000] [--rounds 3]

All contestants get the same generated log (all four source formats) on the same embedded
broker:

* plain loop: an aiokafka consumer reads the raw records and produces each one unchanged to
  an output topic (batched ``getmany`` + ``send``), committing per batch — the floor of any
  consume→produce job;
* same-job loop: one plain aiokafka loop doing plugstream's job with plugstream's pure core
  (normalize, dedupe, aggregate, changes/windows/availability out; see ``same_job_loop``),
  without the stage hop, changelog, DLQ or rebalancing — what a hand-written job would be;
* plugstream: both stages (normalize → connector-status → dedupe/aggregate → outputs,
  changelog, commit) on the same backlog, until every record is processed.

Throughput = raw records / wall time to process the same pre-produced backlog. The plain
loops' clocks start at their first fetched batch (their group join excluded); plugstream's
clock starts before ``pipeline.start()``, so its start-up (topic check, producer, consumers,
changelog restore) is included — a conservative comparison.
Latency = raw record produced → its ``evse-availability`` update (plain loop: its copy)
consumed, for records sent at a steady 500/s after the backlog (first round only).
Each round starts a fresh broker; the machine is noisy (±20% run to run), so the median ratio
over ``--rounds`` is the figure to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import avro
from streams.adapters import NormalizeContext, Rejection, normalize_bytes
from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.core import EvseState, apply_record, availability, new_evse
from streams.engine import Batcher, NativeEngine, change_record, partition_for, policy_for, producer_for
from streams.runner import LogEntry, route
from streams.simulate import make_log
from streams.timeparse import from_millis
from streams.topics import EVSE_AVAILABILITY, RAW_TOPICS, TopicSpec, drain, ensure_topics

PARTITIONS = 4


async def produce(bootstrap: str, entries: list[dict], topic_for, now: bool = False) -> dict:
    ends: dict[tuple[str, int], int] = {}
    async with producer_for(bootstrap) as producer:
        batcher = Batcher(producer, PARTITIONS)
        for entry in entries:
            payload = orjson.dumps(entry["payload"])
            raw_key = entry.get("key")
            key, by = route(LogEntry("bench", 0, entry["source"], payload, None, key=raw_key and raw_key.encode()))
            stamp = int(time.time() * 1000) if now else entry["timestamp"]
            await batcher.add(topic_for(entry["source"]), key, payload, stamp, partition=partition_for(by, PARTITIONS))
        for meta, count in await batcher.flush():
            slot = (meta.topic, meta.partition)
            ends[slot] = max(ends.get(slot, 0), meta.offset + count)
    return ends


async def timed_loop(
    bootstrap: str,
    topics: list[str],
    group_id: str,
    stop_after: int,
    handle: Callable[[Any, dict[TopicPartition, list[Any]]], Awaitable[list[Any]]],
) -> float:
    """Seconds a plain aiokafka consume → produce loop takes for ``stop_after`` records.

    ``handle(producer, batches)`` sends one fetched batch's outputs and returns their
    delivery futures; the loop awaits them and commits per batch. The clock starts at the
    first fetched batch, so the group join is not timed.
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    seen = 0
    started = None
    async with producer_for(bootstrap) as producer:
        try:
            while seen < stop_after:
                batches = await consumer.getmany(timeout_ms=200, max_records=4000)
                if not batches:
                    continue
                if started is None:
                    started = time.perf_counter()
                await asyncio.gather(*await handle(producer, batches))
                seen += sum(len(messages) for messages in batches.values())
                await consumer.commit()
        finally:
            await consumer.stop()
    return time.perf_counter() - (started or time.perf_counter())


async def plain_loop(bootstrap: str, out_topic: str, stop_after: int) -> float:
    """Copy every raw record unchanged to ``out_topic``: the floor of any consume → produce job."""

    async def copy(producer: Any, batches: dict[TopicPartition, list[Any]]) -> list[Any]:
        return [
            await producer.send(out_topic, message.value, key=message.key, timestamp_ms=message.timestamp)
            for messages in batches.values()
            for message in messages
        ]

    return await timed_loop(bootstrap, ["bench.raw"], "bench-plain", stop_after, copy)


SAME_JOB_TOPICS = {
    "changes": "bench.job.changes",
    "availability": "bench.job.availability",
    "windows": "bench.job.windows",
}


async def same_job_loop(bootstrap: str, stop_after: int) -> float:
    """The same job as plugstream, written as one plain aiokafka loop over plugstream's pure core.

    raw.* → ``normalize_bytes`` → ``apply_record`` on an in-memory dict of EVSE states →
    connector changes, closed windows and (per batch, per touched EVSE) availability, Avro
    encoded, sent with ``producer.send``; commit per batch. What it leaves out is exactly
    what plugstream adds: the ``connector-status`` topic hop between the stages (encode +
    decode of every canonical record), the changelog and its acknowledgement before the
    commit, the DLQ, counters, stores and rebalancing. Rejections are counted, not written.
    """
    policy = policy_for(Settings(partitions=PARTITIONS))
    evses: dict[str, EvseState] = {}
    stream_time = 0

    async def job(producer: Any, batches: dict[TopicPartition, list[Any]]) -> list[Any]:
        nonlocal stream_time
        futures = []
        touched: dict[str, EvseState] = {}
        for tp, messages in batches.items():
            source = tp.topic.removeprefix("raw.")
            for message in messages:
                stream_time = max(stream_time, message.timestamp)
                ctx = NormalizeContext(record_time=from_millis(message.timestamp))
                try:
                    result = normalize_bytes(source, message.value or b"", ctx)
                except Rejection:
                    continue
                for record in result.records:
                    uid = record.evseUid
                    evse = evses.get(uid)
                    if evse is None:
                        evse = evses[uid] = new_evse(record)
                    outcome = apply_record(evse, record, policy)
                    if outcome.evse_changed or outcome.changes:
                        touched[uid] = evse
                    key = uid.encode()
                    for change in outcome.changes:
                        value = avro.encode("ConnectorChange", change_record(change))
                        futures.append(await producer.send(SAME_JOB_TOPICS["changes"], value, key=key))
                    for window in outcome.closed_windows:
                        value = avro.encode("EvseAvailabilityWindow", window)
                        futures.append(await producer.send(SAME_JOB_TOPICS["windows"], value, key=key))
        for uid, evse in touched.items():
            value = avro.encode("EvseAvailability", availability(evse, stream_time, policy))
            futures.append(await producer.send(SAME_JOB_TOPICS["availability"], value, key=uid.encode()))
        return futures

    return await timed_loop(bootstrap, list(RAW_TOPICS.values()), "bench-same-job", stop_after, job)


async def latencies(bootstrap: str, topic: str, send, count: int) -> list[float]:
    """Send ``count`` records at 500/s stamped with the wall clock; measure arrival on ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await drain(consumer, tps)  # skip what is already there
    results: list[float] = []
    since = time.time() * 1000  # earlier-stamped records are the backlog's, not this probe's
    sender = asyncio.create_task(send())
    deadline = time.monotonic() + count / 500 + 20
    try:
        while len(results) < count * 0.95 and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time() * 1000
                results.extend(now - m.timestamp for m in messages if m.timestamp >= since)
    finally:
        await sender
        await consumer.stop()
    return results


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 2 else float("nan")


async def one_round(log: list[dict], tail: list[dict] | None) -> tuple[float, float, float, dict]:
    """All contestants on one fresh broker: (copy loop, same-job loop, plugstream ev/s, latencies)."""
    lat: dict[str, list[float]] = {}
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        await ensure_topics(bootstrap, [TopicSpec("bench.raw"), TopicSpec("bench.out")], PARTITIONS)
        await produce(bootstrap, log, lambda _source: "bench.raw")
        plain_s = await plain_loop(bootstrap, "bench.out", len(log))

        settings = Settings(partitions=PARTITIONS)
        pipeline = NativeEngine(settings, bootstrap)
        await ensure_topics(bootstrap, [TopicSpec(t) for t in RAW_TOPICS.values()], PARTITIONS)
        ends = await produce(bootstrap, log, lambda source: RAW_TOPICS[source])  # the same backlog
        started = time.perf_counter()  # includes plugstream's own start-up: conservative
        await pipeline.start()
        await pipeline.wait_processed(ends, timeout=600)
        ours_s = time.perf_counter() - started
        await ensure_topics(bootstrap, [TopicSpec(t) for t in SAME_JOB_TOPICS.values()], PARTITIONS)
        job_s = await same_job_loop(bootstrap, len(log))  # the same raw.* backlog, its own group
        rates = (len(log) / plain_s, len(log) / job_s, len(log) / ours_s)
        if tail is None:
            await pipeline.stop()
            return *rates, lat

        async def send_ours() -> None:
            for i in range(0, len(tail), 50):
                await produce(bootstrap, tail[i : i + 50], lambda source: RAW_TOPICS[source], now=True)
                await asyncio.sleep(0.1)

        lat["plugstream"] = await latencies(bootstrap, EVSE_AVAILABILITY, send_ours, len(tail))
        await pipeline.stop()

        plain_task = asyncio.create_task(plain_loop(bootstrap, "bench.out", len(log) + len(tail)))
        await asyncio.sleep(8)  # let the plain loop's consumer group join before timing latency

        async def send_plain() -> None:
            for i in range(0, len(tail), 50):
                await produce(bootstrap, tail[i : i + 50], lambda _source: "bench.raw", now=True)
                await asyncio.sleep(0.1)

        lat["plain loop"] = await latencies(bootstrap, "bench.out", send_plain, len(tail))
        plain_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await plain_task  # its consumer leaves the group while the broker is still up
    return *rates, lat


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--evses", type=int, default=500)
    parser.add_argument("--latency-records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="fresh broker per round; the median is reported")
    args = parser.parse_args()
    log = make_log(args.evses, args.records, seed=3)
    tail = make_log(args.evses, args.latency_records, seed=4)

    print(f"records {len(log)} ({args.evses} EVSEs, 4 formats), {PARTITIONS} partitions, embedded Tansu broker")
    rates: dict[str, list[float]] = {"plain loop": [], "same-job loop": [], "plugstream": []}
    lat: dict[str, list[float]] = {}
    for number in range(1, args.rounds + 1):
        *round_rates, round_lat = await one_round(log, tail if number == 1 else None)
        lat = lat or round_lat
        for name, rate in zip(rates, round_rates, strict=True):
            rates[name].append(rate)
        plain, job, ours = round_rates
        print(
            f"round {number}: plain loop {plain:,.0f} ev/s, same-job loop {job:,.0f} ev/s,"
            f" plugstream {ours:,.0f} ev/s; plugstream / plain {ours / plain:.2f}, / same-job {ours / job:.2f}"
        )
    print(f"{'median':<14} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in rates.items():
        samples = lat.get(name)
        p50, p99 = (f"{pct(samples, 50):.1f}", f"{pct(samples, 99):.1f}") if samples else ("-", "-")
        print(f"{name:<14} {statistics.median(values):>10,.0f} {p50:>8} {p99:>8}")
    for against in ("plain loop", "same-job loop"):
        ratios = [ours / other for ours, other in zip(rates["plugstream"], rates[against], strict=True)]
        print(
            f"ratio plugstream / {against}: median {statistics.median(ratios):.2f} over {len(ratios)} rounds"
            f" (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
    print("targets: plugstream / plain loop >= 0.25; Quix Streams measured 0.48x the plain loop (developers' guide)")


if __name__ == "__main__":
    asyncio.run(main())
