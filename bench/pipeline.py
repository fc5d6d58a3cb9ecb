"""End-to-end throughput of plugstream beside its real peers, same log, same broker kind, same run.

    python bench/pipeline.py [--records 50000] [--evses 2000] [--rounds 3]
                             [--contestants job,plain,quix,native,faust]

Every contestant does the same job on the same generated log (all five source formats,
``streams.simulate.make_log``): normalize the raw topics, dedupe by connector, aggregate per
EVSE, write ``connector-status``, ``connector-changes``, ``evse-availability`` and the windows.

* ``job``    — the job's work alone, no Kafka: plugstream's adapters and core over the log
  in one loop (also the independent reference every contestant's table is checked against);
* ``plain``  — the cheapest honest Kafka implementation: one aiokafka loop, state in a dict,
  batched output, no changelog or stage hop (``bench/contestants.py``);
* ``quix``   — Quix Streams 3.28: ``group_by`` + RocksDB state + changelog
  (``bench/contestants.py``; needs ``pip install -e ".[bench]"``, else the row is skipped);
* ``native`` — ``plugstream worker`` with default settings (HTTP API process included);
* ``faust``  — ``plugstream worker --engine faust``.

Each contestant runs as its own process on a fresh embedded broker holding the same
pre-produced backlog. Throughput is measured from the contestant's first committed offset
to the moment its consumer groups have committed everything (every record processed and
its outputs acknowledged): ``(records − records committed at the start) / seconds`` — group
joins and start-up are excluded for everyone alike. CPU per raw record is the contestant's
process tree CPU time (utime + stime, children included) over all records. After each run
the contestant's final ``evse-availability`` table (latest record per EVSE, ``streamTime``
and ``stale`` left out) must equal the reference exactly, or the row is marked WRONG.
Rounds alternate the contestants' order; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import avro
from streams.adapters import NormalizeContext, Rejection, normalize_bytes
from streams.broker import EmbeddedBroker, free_port
from streams.config import Settings
from streams.core import EvseState, apply_record, availability, new_evse
from streams.engine import Batcher, change_record, partition_for, policy_for, producer_for
from streams.runner import LogEntry, route
from streams.simulate import make_log
from streams.timeparse import from_millis
from streams.topics import (
    CONNECTOR_STATUS,
    DRAIN_FETCH,
    EVSE_AVAILABILITY,
    RAW_TOPICS,
    TopicSpec,
    drain,
    ensure_topics,
    read_to_end,
    topic_specs,
)

ROOT = Path(__file__).resolve().parent.parent
PROFILE_DIR: str | None = None  # --profile: py-spy flame data per contestant run
PARTITIONS = 4
CONTESTANTS = ("job", "plain", "quix", "native", "faust", "before")
BEFORE: dict[str, str] = {}  # --before REV: kind "before" runs the worker of that git revision
LABELS = {
    "before": "plugstream worker before (--before REV)",
    "job": "the job's work alone, no Kafka",
    "plain": "plain aiokafka loop (same rules)",
    "quix": "Quix Streams 3.28 (group_by + RocksDB + changelog)",
    "native": "plugstream worker (native engine, default settings)",
    "faust": "plugstream worker --engine faust",
}
IGNORED = ("streamTime", "stale")  # stream time is per partition and per batch: engines differ


@dataclass
class Result:
    rate: float
    seconds: float
    cpu_us: float | None  # CPU per raw record, µs
    exact: bool | None  # table equal to the reference (None: not checked)
    note: str = ""


# --- the log and the reference ---------------------------------------------------------------


def encoded_log(entries: list[dict]) -> list[tuple[str, bytes | None, bytes, int, int]]:
    """(topic, key, payload, timestamp, partition) per entry, routed as ``plugstream replay`` does."""
    out = []
    for entry in entries:
        payload = orjson.dumps(entry["payload"])
        raw_key = entry.get("key")
        log_entry = LogEntry("bench", 0, entry["source"], payload, entry["timestamp"], key=raw_key and raw_key.encode())
        key, by = route(log_entry)
        out.append((RAW_TOPICS[entry["source"]], key, payload, entry["timestamp"], partition_for(by, PARTITIONS)))
    return out


def comparable(view: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in view.items() if name not in IGNORED}


def job_alone(log: list[tuple[str, bytes | None, bytes, int, int]]) -> tuple[float, dict[str, dict]]:
    """The job without Kafka (normalize, dedupe, aggregate, encode every output); the reference."""
    policy = policy_for(Settings(partitions=PARTITIONS))
    evses: dict[str, EvseState] = {}
    started = time.perf_counter()
    for batch_start in range(0, len(log), 4000):
        touched: dict[str, EvseState] = {}
        stream_time = 0
        for topic, key, payload, timestamp, _ in log[batch_start : batch_start + 4000]:
            stream_time = max(stream_time, timestamp)
            ctx = NormalizeContext(record_time=from_millis(timestamp), key=key)
            try:
                result = normalize_bytes(topic.removeprefix("raw."), payload, ctx)
            except Rejection:
                continue
            for record in result.records:
                avro.encode("ConnectorStatus", record.__dict__)
                evse = evses.get(record.evseUid)
                if evse is None:
                    evse = evses[record.evseUid] = new_evse(record)
                outcome = apply_record(evse, record, policy)
                touched[record.evseUid] = evse
                for change in outcome.changes:
                    avro.encode("ConnectorChange", change_record(change))
                for window in outcome.closed_windows:
                    avro.encode("EvseAvailabilityWindow", window)
        for evse in touched.values():
            if evse.connectors:
                avro.encode("EvseAvailability", availability(evse, stream_time, policy))
    seconds = time.perf_counter() - started
    reference = {
        uid: comparable(avro.as_published("EvseAvailability", availability(evse, 0, policy)))
        for uid, evse in evses.items()
        if evse.connectors
    }
    return len(log) / seconds, reference


# --- watching a contestant ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its living descendants (and their reaped children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class Committed:
    """Committed offsets of one consumer group (the bench never joins the group)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)

    async def start(self) -> None:
        await self.consumer.start()

    async def total(self, tps: list[TopicPartition]) -> int:
        offsets = await asyncio.gather(*(self.consumer.committed(tp) for tp in tps))
        return sum(offset or 0 for offset in offsets)

    async def stop(self) -> None:
        await self.consumer.stop()


async def high_watermarks(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """End offsets from fetch high watermarks: the embedded broker's ListOffsets answers the
    last batch's base offset + 1, so fetch from just before it and read the high watermark."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **DRAIN_FETCH)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        listed = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, listed[tp] - 1))
        await drain(consumer, tps, on_records=lambda _partition, _messages: None)
        return {tp: consumer.highwater(tp) or 0 for tp in tps}
    finally:
        await consumer.stop()


async def final_table(bootstrap: str) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for messages in (await read_to_end(bootstrap, EVSE_AVAILABILITY)).values():
        for message in messages:
            view = avro.to_jsonable(avro.decode_resolved("EvseAvailability", message.value, message.headers))
            latest[view["evseUid"]] = comparable(view)
    return latest


def stages(kind: str, bootstrap_topics: list[str]) -> list[tuple[str, list[str]]]:
    """(consumer group, input topics) of each stage, in pipeline order."""
    raw = list(RAW_TOPICS.values())
    if kind == "plain":
        return [("bench-plain", raw)]
    if kind == "before":
        raw = [t for t in raw if t != "raw.ocpp"]
    if kind == "faust":  # one Faust app: one consumer group (its id) for both agents
        return [("plugstream", raw), ("plugstream", [CONNECTOR_STATUS])]
    if kind == "quix":
        repartition = [t for t in bootstrap_topics if t.startswith("repartition__")]
        return [("bench-quix", raw), ("bench-quix", repartition)]
    return [("plugstream-normalize", raw), ("plugstream-aggregate", [CONNECTOR_STATUS])]


def command(kind: str, bootstrap: str, state_dir: str) -> list[str]:
    if kind == "before":  # an older checkout's worker, same settings
        return [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "--broker",
            f"kafka://{bootstrap}",
            "--web-port",
            str(free_port()),
        ]
    if kind in ("plain", "quix"):
        return [sys.executable, str(ROOT / "bench" / "contestants.py"), kind, bootstrap, str(PARTITIONS), state_dir]
    engine = "faust" if kind == "faust" else "native"
    return [
        sys.executable,
        "-m",
        "streams.cli",
        "worker",
        "--broker",
        f"kafka://{bootstrap}",
        "--web-port",
        str(free_port()),
        "--engine",
        engine,
    ]


async def run_contestant(
    kind: str,
    log: list[tuple[str, bytes | None, bytes, int, int]],
    reference: dict[str, dict],
    timeout: float = 600,
    during: Any = None,
) -> Result:
    """One contestant on a fresh broker with the backlog already in place. ``during(port)``
    (optional) runs while it processes (``bench/api_load.py`` puts HTTP load there)."""
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as state_dir:
        bootstrap = broker.bootstrap
        # raw topics with an explicit retention: Quix Streams derives its repartition topic's
        # config from them and needs retention.ms (the embedded broker reports only what was set)
        week = 7 * 86_400_000
        await ensure_topics(bootstrap, [TopicSpec(t, retention_ms=week) for t in RAW_TOPICS.values()], PARTITIONS)
        await ensure_topics(bootstrap, topic_specs("plugstream", 86_400_000), PARTITIONS)
        async with producer_for(bootstrap) as producer:
            batcher = Batcher(producer, PARTITIONS)
            for topic, key, payload, timestamp, partition in log:
                await batcher.add(topic, key, payload, timestamp, partition=partition)
            await batcher.flush()
        raw_ends = {}
        for topic in RAW_TOPICS.values():
            raw_ends.update(await high_watermarks(bootstrap, topic))
        env = {**os.environ, "PLUGSTREAM_PARTITIONS": str(PARTITIONS), "PLUGSTREAM_STATE_DIR": state_dir}
        cwd = ROOT
        if kind == "before":
            cwd = Path(BEFORE["tree"])
            env["PYTHONPATH"] = str(cwd)
        args = command(kind, bootstrap, state_dir)
        if PROFILE_DIR is not None:  # sample the contestant (and its children) with py-spy
            out = Path(PROFILE_DIR) / f"{kind}-{int(time.time())}.txt"
            args = [
                "py-spy",
                "record",
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                "200",
                "-o",
                str(out),
                "--",
                *args,
            ]
        port = int(args[args.index("--web-port") + 1]) if "--web-port" in args else None
        with open(Path(state_dir) / "contestant.log", "wb") as output:
            process = subprocess.Popen(
                args, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
            )
        load = None
        try:
            started = None
            committed0 = 0
            watchers: dict[str, Committed] = {}
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    tail = (Path(state_dir) / "contestant.log").read_text()[-2000:]
                    raise RuntimeError(f"{kind} exited with {process.returncode}:\n{tail}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{kind} did not finish within {timeout:.0f}s")
                topics_now = list(await _topics(bootstrap)) if kind == "quix" else []
                plan = stages(kind, topics_now)
                done = True
                for index, (group, topics) in enumerate(plan):
                    if not topics:
                        done = False
                        break
                    if group not in watchers:
                        watchers[group] = Committed(bootstrap, group)
                        await watchers[group].start()
                    ends = raw_ends if index == 0 else {}
                    if index > 0:
                        for topic in topics:
                            ends.update(await high_watermarks(bootstrap, topic))
                    tps = [tp for tp in ends if tp.topic in topics]
                    total = await watchers[group].total(tps)
                    if index == 0 and started is None and total > 0:
                        started, committed0 = time.monotonic(), total
                        if during is not None and port is not None:
                            load = asyncio.create_task(during(port))
                    if total < sum(ends[tp] for tp in tps):
                        done = False
                        break
                if done and started is not None:
                    seconds = time.monotonic() - started
                    break
                await asyncio.sleep(0.05)
            cpu = cpu_seconds(process.pid)
            for watcher in watchers.values():
                await watcher.stop()
        finally:
            if load is not None:
                load.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await load
            if PROFILE_DIR is not None:  # py-spy writes its file on SIGINT, then the target goes
                process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        table = await final_table(bootstrap)
        exact = table == reference
        note = "" if exact else _difference(table, reference)
        counted = len(log) - committed0
        return Result(counted / seconds if seconds > 0 else float("nan"), seconds, cpu / len(log) * 1e6, exact, note)


async def _topics(bootstrap: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


def _difference(table: dict[str, dict], reference: dict[str, dict]) -> str:
    missing = sorted(set(reference) - set(table))
    extra = sorted(set(table) - set(reference))
    differ = sorted(uid for uid in set(table) & set(reference) if table[uid] != reference[uid])
    return f"{len(missing)} EVSEs missing, {len(extra)} extra, {len(differ)} differ (e.g. {(missing + differ)[:2]})"


def available(kind: str) -> str | None:
    """Why a contestant cannot run here, or None."""
    if kind == "quix":
        try:
            import quixstreams  # noqa: F401
        except ImportError:
            return "quixstreams is not installed (pip install -e '.[bench]')"
    if kind == "faust":
        try:
            import faust  # noqa: F401
        except ImportError:
            return "faust-streaming is not installed"
        from streams import engines

        try:
            engines.engine_class("faust")
        except (ImportError, AttributeError) as exc:
            return f"the Faust engine is not available: {exc}"
    return None


def print_table(rates: dict[str, list[Result]], wanted: list[str]) -> None:
    plain = statistics.median(r.rate for r in rates["plain"]) if rates.get("plain") else None
    quix = statistics.median(r.rate for r in rates["quix"]) if rates.get("quix") else None
    print()
    print("| contestant | raw records/s | × plain loop | × Quix | CPU µs / raw record | tables |")
    print("|---|---:|---:|---:|---:|---|")
    for kind in wanted:
        results = rates.get(kind)
        if not results:
            continue
        rate = statistics.median(r.rate for r in results)
        cpu = [r.cpu_us for r in results if r.cpu_us is not None]
        exact = [r.exact for r in results if r.exact is not None]
        verdict = (
            "-"
            if not exact
            else ("exact" if all(exact) else "WRONG: " + next(r.note for r in results if r.exact is False))
        )
        vs_plain = f"{rate / plain:.2f}" if plain else "-"
        vs_quix = f"{rate / quix:.2f}" if quix else "-"
        cpu_text = f"{statistics.median(cpu):.0f}" if cpu else "-"
        print(f"| {LABELS[kind]} | {rate:,.0f} | {vs_plain} | {vs_quix} | {cpu_text} | {verdict} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--evses", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3, help="each contestant once per round; medians reported")
    parser.add_argument("--contestants", default=",".join(CONTESTANTS))
    parser.add_argument("--profile", metavar="DIR", help="record each contestant with py-spy into DIR (raw stacks)")
    parser.add_argument(
        "--before", metavar="REV", help="also run the worker of git revision REV (a 'before' row; a temporary worktree)"
    )
    parser.add_argument(
        "--sources",
        default="ocpi,ocm,here,edrv,ocpp",
        help="source formats in the log (--before a revision without OCPP needs ocpi,ocm,here,edrv)",
    )
    args = parser.parse_args()
    global PROFILE_DIR
    PROFILE_DIR = args.profile
    wanted = [name.strip() for name in args.contestants.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(CONTESTANTS))
    if unknown:
        raise SystemExit(f"unknown contestant(s) {unknown}; valid: {', '.join(CONTESTANTS)}")
    sources = set(args.sources.split(","))
    log = encoded_log([entry for entry in make_log(args.evses, args.records, seed=3) if entry["source"] in sources])
    if args.before:
        tree = tempfile.mkdtemp(prefix="plugstream-before-")
        subprocess.run(
            ["git", "worktree", "add", "--detach", tree, args.before], cwd=ROOT, check=True, capture_output=True
        )
        BEFORE["tree"] = tree
        wanted = [*wanted, "before"] if "before" not in wanted else wanted
    _, reference = job_alone(log)
    print(
        f"{len(log):,} raw records over {args.evses:,} EVSEs ({len(reference):,} in the reference table, 5 formats),"
        f" {PARTITIONS} partitions, embedded broker, {os.cpu_count()} cores, {args.rounds} rounds"
    )
    skipped = {kind: why for kind in wanted if (why := available(kind))}
    for kind, why in skipped.items():
        print(f"skipping {kind}: {why}")
    runnable = [kind for kind in wanted if kind not in skipped]
    rates: dict[str, list[Result]] = {kind: [] for kind in runnable}
    for number in range(1, args.rounds + 1):
        order = runnable[number - 1 :] + runnable[: number - 1]  # alternate who goes first
        line = []
        for kind in order:
            if kind == "job":
                rate, _ = job_alone(log)
                result = Result(rate, len(log) / rate, None, None)
            else:
                result = await run_contestant(kind, log, reference)
            rates[kind].append(result)
            mark = "" if result.exact in (None, True) else " WRONG"
            line.append(f"{kind} {result.rate:,.0f}/s{mark}")
        print(f"round {number}: " + ", ".join(line))
    print_table(rates, runnable)
    if BEFORE:
        subprocess.run(["git", "worktree", "remove", "--force", BEFORE["tree"]], cwd=ROOT, capture_output=True)
    if "native" in rates and "quix" in rates and "plain" in rates:
        native = statistics.median(r.rate for r in rates["native"])
        quix = statistics.median(r.rate for r in rates["quix"])
        plain = statistics.median(r.rate for r in rates["plain"])
        print(
            f"\ntargets: plugstream >= 1.0x Quix Streams ({native / quix:.2f}x), >= 0.5x the plain loop"
            f" ({native / plain:.2f}x)"
        )


if __name__ == "__main__":
    asyncio.run(main())
