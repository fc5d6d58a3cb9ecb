"""Helpers for tests that run real ``plugstream worker`` processes against one broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from streams.engine import META_KEY
from streams.runner import snapshot
from streams.topics import CONNECTOR_STATUS, EVSE_AVAILABILITY, changelog_topic, read_to_end

PARTITIONS = 4


def start_worker(bootstrap: str, log_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PLUGSTREAM_BROKER": f"kafka://{bootstrap}",
        "PLUGSTREAM_PARTITIONS": str(PARTITIONS),
        **(extra_env or {}),
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--without-web"],
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
    while (await snapshot(bootstrap))["evses"] != expected:
        assert all(w.poll() is None for w in workers), log.read_text()
        assert time.monotonic() < deadline, "workers did not converge to the single-worker result"
        await asyncio.sleep(0.5)


async def reconcile(bootstrap: str, app_id: str = "plugstream") -> tuple[dict[str, int], int]:
    """Counters summed over the latest changelog meta of every partition, and the number of
    connector-status records: with exactly-once state each record was classified once."""
    counters: dict[str, int] = {}
    for messages in (await read_to_end(bootstrap, changelog_topic(app_id))).values():
        metas = [m for m in messages if m.key == META_KEY]
        if metas:
            for name, n in orjson.loads(metas[-1].value)["counters"].items():
                counters[name] = counters.get(name, 0) + n
    records = sum(len(ms) for ms in (await read_to_end(bootstrap, CONNECTOR_STATUS)).values())
    return counters, records
