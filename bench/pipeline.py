"""End-to-end pipeline throughput and latency vs. a plain aiokafka loop, same broker, same run.

    python bench/pipeline.py [--records 20000] [--evses 500] [--latency-records 2000] [--rounds 3]

Both contestants get the same generated log (all four source formats) on the same embedded
broker:

* plain loop: an aiokafka consumer reads the raw records and produces each one unchanged to
  an output topic (batched ``getmany`` + ``send``), committing per batch — the floor of any
  consume→produce job;
* plugstream: both stages (normalize → connector-status → dedupe/aggregate → outputs,
  changelog, commit) on the same backlog, until every record is processed.

Throughput = raw records / wall time to process the same pre-produced backlog. The plain
loop's clock starts at its first fetched batch (its group join excluded); plugstream's clock
starts before ``pipeline.start()``, so its start-up (topic check, producer, consumers,
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
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.engine import Batcher, producer_for
from streams.runner import LocalPipeline, LogEntry, routing_key
from streams.simulate import make_log
from streams.topics import EVSE_AVAILABILITY, RAW_TOPICS, TopicSpec, drain, ensure_topics

PARTITIONS = 4


async def produce(bootstrap: str, entries: list[dict], topic_for, now: bool = False) -> dict:
    ends: dict[tuple[str, int], int] = {}
    async with producer_for(bootstrap) as producer:
        batcher = Batcher(producer, PARTITIONS)
        for entry in entries:
            payload = orjson.dumps(entry["payload"])
            key = routing_key(LogEntry("bench", 0, entry["source"], payload, None))
            stamp = int(time.time() * 1000) if now else entry["timestamp"]
            await batcher.add(topic_for(entry["source"]), key, payload, stamp)
        for meta, count in await batcher.flush():
            slot = (meta.topic, meta.partition)
            ends[slot] = max(ends.get(slot, 0), meta.offset + count)
    return ends


async def plain_loop(bootstrap: str, total: int, out_topic: str, stop_after: int) -> float:
    consumer = AIOKafkaConsumer(
        "bench.raw",
        bootstrap_servers=bootstrap,
        group_id="bench-plain",
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
                if started is None and batches:
                    started = time.perf_counter()
                futures = []
                for messages in batches.values():
                    for message in messages:
                        futures.append(
                            await producer.send(
                                out_topic, message.value, key=message.key, timestamp_ms=message.timestamp
                            )
                        )
                        seen += 1
                await asyncio.gather(*futures)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()
    return time.perf_counter() - (started or time.perf_counter())


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


async def one_round(log: list[dict], tail: list[dict] | None) -> tuple[float, float, dict]:
    """Both contestants on one fresh broker: (plain ev/s, plugstream ev/s, latencies)."""
    lat: dict[str, list[float]] = {}
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        await ensure_topics(bootstrap, [TopicSpec("bench.raw"), TopicSpec("bench.out")], PARTITIONS)
        await produce(bootstrap, log, lambda _source: "bench.raw")
        plain_s = await plain_loop(bootstrap, len(log), "bench.out", len(log))

        settings = Settings(partitions=PARTITIONS)
        pipeline = LocalPipeline(settings, bootstrap)
        await ensure_topics(bootstrap, [TopicSpec(t) for t in RAW_TOPICS.values()], PARTITIONS)
        ends = await produce(bootstrap, log, lambda source: RAW_TOPICS[source])  # the same backlog
        started = time.perf_counter()  # includes plugstream's own start-up: conservative
        await pipeline.start()
        await pipeline.wait_processed(ends, timeout=600)
        ours_s = time.perf_counter() - started
        if tail is None:
            await pipeline.stop()
            return len(log) / plain_s, len(log) / ours_s, lat

        async def send_ours() -> None:
            for i in range(0, len(tail), 50):
                await produce(bootstrap, tail[i : i + 50], lambda source: RAW_TOPICS[source], now=True)
                await asyncio.sleep(0.1)

        lat["plugstream"] = await latencies(bootstrap, EVSE_AVAILABILITY, send_ours, len(tail))
        await pipeline.stop()

        plain_task = asyncio.create_task(plain_loop(bootstrap, 0, "bench.out", len(log) + len(tail)))
        await asyncio.sleep(8)  # let the plain loop's consumer group join before timing latency

        async def send_plain() -> None:
            for i in range(0, len(tail), 50):
                await produce(bootstrap, tail[i : i + 50], lambda _source: "bench.raw", now=True)
                await asyncio.sleep(0.1)

        lat["plain loop"] = await latencies(bootstrap, "bench.out", send_plain, len(tail))
        plain_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await plain_task  # its consumer leaves the group while the broker is still up
    return len(log) / plain_s, len(log) / ours_s, lat


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
    plain_rates, our_rates, ratios = [], [], []
    lat: dict[str, list[float]] = {}
    for number in range(1, args.rounds + 1):
        plain_rate, our_rate, round_lat = await one_round(log, tail if number == 1 else None)
        lat = lat or round_lat
        plain_rates.append(plain_rate)
        our_rates.append(our_rate)
        ratios.append(our_rate / plain_rate)
        print(
            f"round {number}: plain loop {plain_rate:,.0f} ev/s,"
            f" plugstream {our_rate:,.0f} ev/s, ratio {ratios[-1]:.2f}"
        )
    print(f"{'median':<12} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, rates in (("plain loop", plain_rates), ("plugstream", our_rates)):
        values = lat.get(name, [])
        print(f"{name:<12} {statistics.median(rates):>10,.0f} {pct(values, 50):>8.1f} {pct(values, 99):>8.1f}")
    print(
        f"ratio plugstream / plain loop: median {statistics.median(ratios):.2f} over {len(ratios)} rounds"
        f" (min {min(ratios):.2f}, max {max(ratios):.2f}; target >= 0.25; Quix measured 0.48)"
    )


if __name__ == "__main__":
    asyncio.run(main())
