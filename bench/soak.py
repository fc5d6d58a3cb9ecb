"""Large-state soak: ≥1M raw records over ≥100k connectors, memory:// vs rocksdb:// side by side.

    python bench/soak.py [--records 1000000] [--evses 50000] [--stores memory,rocksdb]
                         [--small-evses 5000]

For each store, on a fresh embedded broker:

1. a real ``plugstream worker --without-web`` process starts (its own state directory) and
   joins the consumer group on empty topics; its RSS then is the *baseline*;
2. this script publishes the simulated feed (all four formats; every EVSE once, then one
   status change per record; a virtual clock at 50 ms per record so event time is
   reproducible) as fast as it can, while the worker processes it;
3. done = every raw record committed by the normalize group and every ``connector-status``
   record committed by the aggregate group (offsets read with OffsetFetch; the end of
   ``connector-status`` from a fetch's high watermark — ListOffsets is unreliable on Tansu).

Reported per store: raw records/s over the whole run (publish start → all committed),
peak RSS of the worker (``VmHWM``), and state cost per connector =
(peak RSS − baseline RSS) / connectors. Target: ≤ 1 KB per connector with rocksdb://.

That figure charges the state with everything the peak holds besides it: fetched batches,
records in flight, RocksDB's budget — memory that depends on the record rate, not on how many
connectors there are (a worker whose idle RSS shrinks by 9 MiB gets a *worse* figure). With
``--small-evses K`` each store is soaked a second time with the same records over K EVSEs,
and the marginal cost is printed too: (peak − small-state peak) / (connectors − its
connectors), what one more connector of state costs.
The publisher, the broker and the worker share the machine's cores, equally for both stores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import TopicPartition

from streams import kafka
from streams.broker import EmbeddedBroker
from streams.engine import Batcher, producer_for
from streams.simulate import feed, make_evses
from streams.topics import CONNECTOR_STATUS, DRAIN_FETCH, RAW_TOPICS, ensure_topics, topic_specs

PARTITIONS = 4
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 50


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for pid {pid}")


def connectors_of(evse_count: int, seed: int) -> int:
    import random

    return sum(len(e.statuses) for e in make_evses(evse_count, random.Random(seed)))


async def publish(bootstrap: str, records: int, evse_count: int, seed: int) -> dict[tuple[str, int], int]:
    """The feed, ``records`` long, with virtual-clock timestamps; returns raw end offsets."""
    clock_ms = START_MS
    ends: dict[tuple[str, int], int] = {}

    def clock() -> int:
        return clock_ms

    started = time.monotonic()
    async with producer_for(bootstrap) as producer:
        batcher = Batcher(producer, PARTITIONS)
        for n, (source, key, payload) in enumerate(feed(evse_count, seed, clock=clock), start=1):
            await batcher.add(RAW_TOPICS[source], key, payload, clock_ms)
            clock_ms += STEP_MS
            if n % 20_000 == 0 or n == records:  # flush (and report) every 20k records
                for meta, count, _ in await batcher.flush():
                    slot = (meta.topic, meta.partition)
                    ends[slot] = max(ends.get(slot, 0), meta.offset + count)
                if n % 100_000 == 0 or n == records:
                    print(f"  published {n:,} ({n / (time.monotonic() - started):,.0f}/s)", flush=True)
            if n == records:
                break
    print()
    return ends


async def committed(bootstrap: str, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = kafka.consumer(bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


async def status_end(bootstrap: str, positions: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """connector-status high watermarks, from a fetch at the committed positions."""
    consumer = kafka.consumer(bootstrap, enable_auto_commit=False, **DRAIN_FETCH)
    await consumer.start()
    try:
        consumer.assign(list(positions))
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        highs: dict[TopicPartition, int] = {}
        for _ in range(50):
            await consumer.getmany(timeout_ms=50, max_records=1)
            highs = {tp: consumer.highwater(tp) for tp in positions if consumer.highwater(tp) is not None}
            if len(highs) == len(positions):
                break
        return highs
    finally:
        await consumer.stop()


async def wait_done(bootstrap: str, raw_ends: dict[tuple[str, int], int], worker: subprocess.Popen, log: Path) -> None:
    raw_tps = [TopicPartition(t, p) for t, p in raw_ends]
    status_tps = [TopicPartition(CONNECTOR_STATUS, p) for p in range(PARTITIONS)]
    last_report = time.monotonic()
    while True:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.returncode}:\n{log.read_text()[-3000:]}")
        raw_done = await committed(bootstrap, "plugstream-normalize", raw_tps)
        left = sum(max(0, raw_ends[(tp.topic, tp.partition)] - raw_done[tp]) for tp in raw_tps)
        if left == 0:
            positions = await committed(bootstrap, "plugstream-aggregate", status_tps)
            ends = await status_end(bootstrap, positions)
            behind = sum(max(0, ends.get(tp, 0) - positions[tp]) for tp in status_tps)
            if len(ends) == len(status_tps) and behind == 0:
                return
            status = f"aggregate behind by {behind:,}"
        else:
            status = f"normalize behind by {left:,}"
        now = time.monotonic()
        if now - last_report >= 10:
            print(f"  {status}", flush=True)
            last_report = now
        await asyncio.sleep(1)


async def soak(store: str, records: int, evse_count: int, seed: int, workdir: Path) -> dict[str, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        await ensure_topics(bootstrap, topic_specs("plugstream", 86_400_000), PARTITIONS)
        log = workdir / f"worker-{store}.log"
        env = {
            **os.environ,
            "PLUGSTREAM_BROKER": f"kafka://{bootstrap}",
            "PLUGSTREAM_PARTITIONS": str(PARTITIONS),
            "PLUGSTREAM_STORE": f"{store}://",
            "PLUGSTREAM_STATE_DIR": str(workdir / f"state-{store}"),
        }  # no MALLOC_* variables: the worker tunes glibc itself (streams/memory.py)
        with open(log, "wb") as err:
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--without-web"], env=env, stderr=err
            )
        try:
            await asyncio.sleep(8)  # group join on empty topics
            baseline = rss_kib(worker.pid, "VmRSS")
            started = time.monotonic()
            raw_ends = await publish(bootstrap, records, evse_count, seed)
            await wait_done(bootstrap, raw_ends, worker, log)
            elapsed = time.monotonic() - started
            peak = rss_kib(worker.pid, "VmHWM")
            final = rss_kib(worker.pid, "VmRSS")
        finally:
            worker.terminate()
            worker.wait(30)
    return {"elapsed": elapsed, "baseline": baseline, "peak": peak, "final": final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--evses", type=int, default=50_000)
    parser.add_argument("--stores", default="memory,rocksdb")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--small-evses", type=int, help="also soak each store over this many EVSEs: the marginal cost per connector"
    )
    args = parser.parse_args()
    connectors = connectors_of(args.evses, args.seed)
    print(
        f"{args.records:,} raw records over {args.evses:,} EVSEs / {connectors:,} connectors, {PARTITIONS} partitions"
    )
    small = connectors_of(args.small_evses, args.seed) if args.small_evses else 0
    results, small_results = {}, {}
    with tempfile.TemporaryDirectory(prefix="plugstream-soak-") as tmp:
        for store in args.stores.split(","):
            print(f"{store}://")
            results[store] = asyncio.run(soak(store, args.records, args.evses, args.seed, Path(tmp)))
            print()
            if args.small_evses:
                print(f"{store}:// over {args.small_evses:,} EVSEs / {small:,} connectors")
                small_results[store] = asyncio.run(
                    soak(store, args.records, args.small_evses, args.seed, Path(tmp) / "small")
                )
                print()
    print(f"{'store':<10} {'raw rec/s':>10} {'baseline MiB':>13} {'peak MiB':>9} {'B/connector':>12}", end="")
    print(f" {'small peak MiB':>15} {'marginal B/connector':>21}" if small_results else "")
    for store, r in results.items():
        per_connector = (r["peak"] - r["baseline"]) * 1024 / connectors
        print(
            f"{store + '://':<10} {args.records / r['elapsed']:>10,.0f} {r['baseline'] / 1024:>13.0f}"
            f" {r['peak'] / 1024:>9.0f} {per_connector:>12,.0f}",
            end="",
        )
        if store in small_results:
            low = small_results[store]["peak"]
            marginal = (r["peak"] - low) * 1024 / (connectors - small)
            print(f" {low / 1024:>15.0f} {marginal:>21,.0f}")
        else:
            print()
    if "rocksdb" in results:
        r = results["rocksdb"]
        per_connector = (r["peak"] - r["baseline"]) * 1024 / connectors
        verdict = "meets" if per_connector <= 1024 else "MISSES"
        print(f"rocksdb:// state per connector {per_connector:,.0f} B ({verdict} the <= 1 KB target)")
        if "rocksdb" in small_results:
            marginal = (r["peak"] - small_results["rocksdb"]["peak"]) * 1024 / (connectors - small)
            print(f"rocksdb:// marginal state per connector {marginal:,.0f} B (diagnostic only)")


if __name__ == "__main__":
    main()
