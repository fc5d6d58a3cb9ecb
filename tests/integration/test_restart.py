"""A worker killed with SIGKILL mid-stream and restarted ends with exactly the same tables."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from streams.broker import EmbeddedBroker
from streams.runner import publish, snapshot
from streams.simulate import make_log
from streams.topics import EVSE_AVAILABILITY, read_to_end

from .test_pipeline import run_log

pytestmark = pytest.mark.integration


def start_worker(bootstrap: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PLUGSTREAM_BROKER": f"kafka://{bootstrap}", "PLUGSTREAM_PARTITIONS": "4"}
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--without-web"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log_path, "ab"),
    )


def write_log(path: Path, entries: list[dict]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))


async def test_sigkill_mid_stream_then_restart_gives_identical_tables(broker, tmp_path: Path) -> None:
    entries = make_log(evse_count=80, records=6000, seed=11)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    write_log(first, entries[:3000])
    write_log(second, entries[3000:])
    with EmbeddedBroker() as reference:
        _, expected = await run_log(reference.bootstrap, [first, second], partitions=4)

    worker_log = tmp_path / "worker.log"
    await publish(broker.bootstrap, [first], 4, progress=False)
    worker = start_worker(broker.bootstrap, worker_log)
    try:
        deadline = time.monotonic() + 60
        while not any((await read_to_end(broker.bootstrap, EVSE_AVAILABILITY)).values()):
            assert worker.poll() is None, worker_log.read_text()
            assert time.monotonic() < deadline, "worker made no progress"
            await asyncio.sleep(0.2)
        await publish(broker.bootstrap, [second], 4, progress=False)
        await asyncio.sleep(0.2)
        worker.send_signal(signal.SIGKILL)  # mid-stream: the second half is being processed
        worker.wait(10)

        worker = start_worker(broker.bootstrap, worker_log)
        deadline = time.monotonic() + 90
        while True:
            got = await snapshot(broker.bootstrap)
            if got["evses"] == expected["evses"]:
                break
            assert worker.poll() is None, worker_log.read_text()
            assert time.monotonic() < deadline, "restarted worker did not converge to the uninterrupted result"
            await asyncio.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert len(expected["evses"]) == 80
