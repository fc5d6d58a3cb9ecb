"""A worker killed with SIGKILL mid-stream and restarted ends with exactly the same tables."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.runner import publish
from streams.simulate import make_log

from .test_pipeline import run_log
from .workers import (
    PARTITIONS,
    evse_uids,
    reconcile,
    start_worker,
    stop,
    wait_converged,
    wait_for_progress,
    write_log,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_sigkill_mid_stream_then_restart_gives_identical_tables(
    broker, tmp_path: Path, store: str, engine: str
) -> None:
    entries = make_log(evse_count=80, records=6000 if engine == "native" else 2400, seed=11)
    middle = len(entries) // 2
    first = write_log(tmp_path / "first.jsonl", entries[:middle])
    second = write_log(tmp_path / "second.jsonl", entries[middle:])
    with EmbeddedBroker() as reference:
        _, expected = await run_log(reference.bootstrap, [first, second], partitions=PARTITIONS)

    log = tmp_path / "worker.log"
    env = {"PLUGSTREAM_STORE": store, "PLUGSTREAM_STATE_DIR": str(tmp_path / "state")}
    await publish(broker.bootstrap, [first], PARTITIONS, progress=False)
    worker = start_worker(broker.bootstrap, log, env, engine=engine)
    try:
        await wait_for_progress(broker.bootstrap, [worker], log)
        await publish(broker.bootstrap, [second], PARTITIONS, progress=False)
        await asyncio.sleep(0.2)
        worker.send_signal(signal.SIGKILL)  # mid-stream: the second half is being processed
        worker.wait(10)
        worker = start_worker(broker.bootstrap, log, env, engine=engine)  # rocksdb://: reopens its databases
        await wait_converged(broker.bootstrap, expected["evses"], [worker], log, timeout=120)
        counters, records = await reconcile(broker.bootstrap, engine=engine)
        assert counters["accepted"] == expected["stats"]["accepted"]
        assert counters["accepted"] + counters["duplicates"] + counters["stale"] == records
    finally:
        stop(worker)
    assert {e["evseUid"] for e in expected["evses"]} == evse_uids(entries)  # the whole table, nothing lost
