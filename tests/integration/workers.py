"""Helpers for tests that run real ``plugstream worker`` processes against one broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from streams.engine import META_KEY
from streams.runner import snapshot
from streams.topics import CONNECTOR_STATUS, EVSE_AVAILABILITY, changelog_topic, read_to_end

from .test_pipeline import dead_letters

PARTITIONS = 4


def start_worker(
    bootstrap: str,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    web_port: int | None = None,
    engine: str = "native",
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PLUGSTREAM_BROKER": f"kafka://{bootstrap}",
        "PLUGSTREAM_PARTITIONS": str(PARTITIONS),
        "PLUGSTREAM_ENGINE": engine,
        **(extra_env or {}),
    }
    web = ["--without-web"] if web_port is None else ["--web-port", str(web_port)]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", *web],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)


def evse_uids(entries: list[dict]) -> set[str]:
    """Every EVSE the log's documents name (normalized with the adapters, no Kafka)."""
    from datetime import UTC, datetime

    from streams.adapters import NormalizeContext, Rejection, normalize_document

    uids: set[str] = set()
    for entry in entries:
        key = entry.get("key")
        ctx = NormalizeContext(record_time=datetime(2100, 1, 1, tzinfo=UTC), key=key and key.encode())
        try:
            records = normalize_document(entry["source"], entry["payload"], ctx).records
        except Rejection:
            continue
        uids.update(r.evseUid for r in records if r.scope != "CHARGE_POINT")
    return uids


def write_log(path: Path, entries: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    return path


async def wait_for_progress(
    bootstrap: str, workers: list[subprocess.Popen[bytes]], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not any((await read_to_end(bootstrap, EVSE_AVAILABILITY)).values()):
        assert all(w.poll() is None for w in workers), log.read_text()
        assert time.monotonic() < deadline, "workers made no progress"
        await asyncio.sleep(0.2)


async def wait_converged(
    bootstrap: str, expected: list[dict], workers: list[subprocess.Popen[bytes]], log: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while (evses := (await snapshot(bootstrap))["evses"]) != expected:
        assert all(w.poll() is None for w in workers), log.read_text()
        assert time.monotonic() < deadline, (
            f"workers did not converge to the single-worker result: {differences(expected, evses)}\n"
            + log.read_text()[-4000:]
        )
        await asyncio.sleep(0.5)


def differences(expected: list[dict], got: list[dict], shown: int = 3) -> str:
    """Which EVSEs differ, and how: a failed convergence says what went wrong."""
    want = {e["evseUid"]: e for e in expected}
    have = {e["evseUid"]: e for e in got}
    missing, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    changed = [uid for uid in sorted(want.keys() & have.keys()) if want[uid] != have[uid]]
    lines = [f"{len(missing)} missing {missing[:shown]}, {len(extra)} extra {extra[:shown]}, {len(changed)} differ"]
    for uid in changed[:shown]:
        fields = {k: (want[uid].get(k), have[uid].get(k)) for k in want[uid].keys() | have[uid].keys()}
        lines.append(f"  {uid}: " + "; ".join(f"{k}: want {a!r} got {b!r}" for k, (a, b) in fields.items() if a != b))
    return "\n".join(lines)


async def reconcile(bootstrap: str, app_id: str = "plugstream", engine: str = "native") -> tuple[dict[str, int], int]:
    """Counters summed over the state the engine persisted (native: the latest changelog meta
    of every partition; faust: the latest table value of every key), and the number of
    connector-status records: with exactly-once state each record was classified once."""
    counters: dict[str, int] = {}
    if engine == "faust":
        from streams.faust_app import TABLE

        latest: dict[bytes, bytes] = {}
        for messages in (await read_to_end(bootstrap, f"{app_id}-{TABLE}-changelog")).values():
            for message in messages:
                latest[message.key] = message.value
        totals = [orjson.loads(value)["k"] for value in latest.values() if value is not None]
    else:
        totals = []
        for messages in (await read_to_end(bootstrap, changelog_topic(app_id))).values():
            metas = [m for m in messages if m.key == META_KEY]
            if metas:
                totals.append(orjson.loads(metas[-1].value)["counters"])
    for partial in totals:
        for name, n in partial.items():
            counters[name] = counters.get(name, 0) + n
    for name in ("accepted", "duplicates", "stale"):
        counters.setdefault(name, 0)
    records = sum(len(ms) for ms in (await read_to_end(bootstrap, CONNECTOR_STATUS)).values())
    return counters, records


def bad_payload(index: int) -> tuple[str, Any, str]:
    """A malformed raw document (source, log payload, expected DLQ kind), unique per index."""
    kinds: list[tuple[str, Any, str]] = [
        ("ocpi", {"status": "AVAILABLE", "connectors": [{"id": "1"}], "n": index}, "missing_id"),
        ("ocpi", {"uid": f"BAD{index}", "status": "ASLEEP", "connectors": [{"id": "1"}]}, "unknown_status"),
        (
            "here",
            {"id": f"h-bad{index}", "connectors": [{"chargingPoint": {"numberOfConnectors": 1, "numberOfInUse": 9}}]},
            "absurd_value",
        ),
        ("edrv", {"_id": f"c-bad{index}", "chargestation": "s-bad"}, "missing_status"),
        ("ocm", {"ID": -1 - index, "Connections": []}, "invalid_id"),
        ("ocpi", f'{{"uid": "cut-{index}", "status": ', "malformed_json"),  # a string payload: raw bytes
    ]
    return kinds[index % len(kinds)]


def with_bad_input(entries: list[dict], every: int = 40) -> tuple[list[dict], dict[bytes, str]]:
    """The log with a malformed document after every ``every``-th entry, and the DLQ it must
    produce: raw payload bytes → error kind."""
    mixed: list[dict] = []
    expected: dict[bytes, str] = {}
    for index, entry in enumerate(entries):
        mixed.append(entry)
        if index % every == every - 1:
            source, payload, kind = bad_payload(index)
            mixed.append({"source": source, "timestamp": entry["timestamp"], "payload": payload})
            expected[payload.encode() if isinstance(payload, str) else orjson.dumps(payload)] = kind
    return mixed, expected


async def wait_dead_letters(bootstrap: str, expected: dict[bytes, str], timeout: float = 30) -> None:
    """Every malformed raw record is in the DLQ with its kind, and nothing else is there.

    At-least-once: a record redelivered after a crash may be dead-lettered twice, never not
    at all. Polls because the tables can converge before the last DLQ record is written."""
    deadline = time.monotonic() + timeout
    while True:
        got: dict[bytes, set[str]] = {}
        for letter in await dead_letters(bootstrap):
            got.setdefault(letter["payload"], set()).add(letter["errorKind"])
        if got == {raw: {kind} for raw, kind in expected.items()} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert set(got) - set(expected) == set(), "unexpected dead letters"
    missing = [raw[:60] for raw in expected if raw not in got]
    assert not missing, f"{len(missing)} of {len(expected)} malformed records never reached the DLQ: {missing[:3]}"
    wrong = {raw[:60]: kinds for raw, kinds in got.items() if kinds != {expected[raw]}}
    assert not wrong, wrong


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``plugstream ARGS`` in a child process, output captured, ``env`` on top of this one's."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
