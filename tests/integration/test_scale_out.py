"""Several workers in one consumer group: crashes, restarts and a worker joining mid-stream.

After the log is fully processed the ``evse-availability`` view equals the uninterrupted
single-worker result exactly; every ``connector-status`` record was classified exactly once
(accepted + duplicates + stale = records on the topic, with ``accepted`` equal to the
single-worker run: redelivered records are absorbed as duplicates/stale, never as changes);
and every malformed raw record interleaved in the log is in the DLQ with its kind.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.runner import publish
from streams.simulate import make_log

from .test_pipeline import run_log
from .workers import (
    PARTITIONS,
    reconcile,
    start_worker,
    stop,
    wait_converged,
    wait_dead_letters,
    wait_for_progress,
    with_bad_input,
    write_log,
)

pytestmark = pytest.mark.integration


async def reference(paths: list[Path]) -> dict:
    with EmbeddedBroker() as broker:
        _, result = await run_log(broker.bootstrap, paths, partitions=PARTITIONS)
    return result


@functools.cache
def mixed_log(records: int) -> tuple[list[dict], dict[bytes, str]]:
    """``records`` valid records over 80 EVSEs with a malformed one of six kinds after every 40th."""
    return with_bad_input(make_log(evse_count=80, records=records, seed=21))


def log_for(engine: str) -> tuple[list[dict], dict[bytes, str]]:
    # the Faust engine is ~20x slower: a shorter log keeps the suite's time in bounds
    return mixed_log(4000 if engine == "native" else 1600)


#: seconds for the workers to converge after a crash or rebalance (a run that converges does so
#: well within a minute; the margin is for a loaded CI machine)
CONVERGE_TIMEOUT = 180


async def check_reconciled(bootstrap: str, expected: dict, engine: str, timeout: float = 60) -> None:
    """The tables converge before the workers are done: records redelivered after a crash
    (Faust re-reads a partition nobody committed from its start) change nothing in them but
    are still being classified. So wait for the counters to account for every record; a
    record counted twice would overshoot, one lost never gets there."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        counters, records = await reconcile(bootstrap, engine=engine)
        classified = counters["accepted"] + counters["duplicates"] + counters["stale"]
        if classified >= records or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(1)
    assert counters["accepted"] == expected["stats"]["accepted"], (counters, records, expected["stats"])
    assert classified == records, (counters, records)
    await wait_dead_letters(bootstrap, log_for(engine)[1])  # none lost to the crash or rebalance


@pytest.fixture
def halves(tmp_path: Path, engine: str) -> tuple[Path, Path]:
    log = log_for(engine)[0]
    middle = len(log) // 2
    return write_log(tmp_path / "a.jsonl", log[:middle]), write_log(tmp_path / "b.jsonl", log[middle:])


async def test_sigkill_one_of_two_workers_mid_replay(broker, halves, tmp_path: Path, engine: str) -> None:
    expected = await reference(list(halves))
    log = tmp_path / "workers.log"
    workers = [start_worker(broker.bootstrap, log, engine=engine), start_worker(broker.bootstrap, log, engine=engine)]
    try:
        await publish(broker.bootstrap, [halves[0]], PARTITIONS, progress=False)
        await wait_for_progress(broker.bootstrap, workers, log)
        await publish(broker.bootstrap, [halves[1]], PARTITIONS, progress=False)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        await wait_converged(broker.bootstrap, expected["evses"], workers[1:], log, timeout=CONVERGE_TIMEOUT)
        await check_reconciled(broker.bootstrap, expected, engine)
    finally:
        for worker in workers:
            stop(worker)


def store_env(store: str, state_dir: Path) -> dict[str, str]:
    """Each worker process gets its own state directory (as each pod gets its own volume)."""
    return {"PLUGSTREAM_STORE": store, "PLUGSTREAM_STATE_DIR": str(state_dir)}


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_sigterm_and_restart(broker, halves, tmp_path: Path, store: str, engine: str) -> None:
    """rocksdb://: the restarted worker reopens databases whose partitions the other worker
    advanced meanwhile; it must resume from its checkpoint plus the changelog's tail."""
    expected = await reference(list(halves))
    log = tmp_path / "workers.log"
    envs = [store_env(store, tmp_path / "w0"), store_env(store, tmp_path / "w1")]
    workers = [start_worker(broker.bootstrap, log, env, engine=engine) for env in envs]
    try:
        await publish(broker.bootstrap, [halves[0]], PARTITIONS, progress=False)
        await wait_for_progress(broker.bootstrap, workers, log)
        stop(workers[0])
        assert workers[0].returncode == 0, log.read_text()  # a clean shutdown on SIGTERM
        await publish(broker.bootstrap, [halves[1]], PARTITIONS, progress=False)
        workers[0] = start_worker(broker.bootstrap, log, envs[0], engine=engine)
        await wait_converged(broker.bootstrap, expected["evses"], workers, log, timeout=CONVERGE_TIMEOUT)
        await check_reconciled(broker.bootstrap, expected, engine)
    finally:
        for worker in workers:
            stop(worker)


async def test_a_third_worker_joins_mid_stream(broker, halves, tmp_path: Path, engine: str) -> None:
    expected = await reference(list(halves))
    log = tmp_path / "workers.log"
    workers = [start_worker(broker.bootstrap, log, engine=engine), start_worker(broker.bootstrap, log, engine=engine)]
    try:
        await publish(broker.bootstrap, [halves[0]], PARTITIONS, progress=False)
        await wait_for_progress(broker.bootstrap, workers, log)
        publishing = asyncio.create_task(publish(broker.bootstrap, [halves[1]], PARTITIONS, progress=False))
        workers.append(start_worker(broker.bootstrap, log, engine=engine))
        await publishing
        await wait_converged(broker.bootstrap, expected["evses"], workers, log, timeout=CONVERGE_TIMEOUT)
        await check_reconciled(broker.bootstrap, expected, engine)
    finally:
        for worker in workers:
            stop(worker)


@pytest.mark.parametrize("engine", ["native"])  # Faust keeps standbys its own way (table_standby_replicas)
async def test_standby_replica_takes_over_from_its_checkpoint(broker, halves, tmp_path: Path, engine: str) -> None:
    """With standby_replicas=1 each worker keeps the other's partitions in its local databases,
    so after a SIGKILL the survivor restores them from its standby checkpoint (the changelog's
    tail only) and still ends with the single-worker tables."""
    expected_first = await reference([halves[0]])
    expected = await reference(list(halves))
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    envs = [{**store_env("rocksdb://", tmp_path / f"w{i}"), "PLUGSTREAM_STANDBY_REPLICAS": "1"} for i in range(2)]
    workers = [start_worker(broker.bootstrap, logs[i], envs[i]) for i in range(2)]
    try:
        await publish(broker.bootstrap, [halves[0]], PARTITIONS, progress=False)
        await wait_converged(broker.bootstrap, expected_first["evses"], workers, logs[0])
        await asyncio.sleep(1.5)  # the standbys follow the changelog within a fetch or two
        survivor_log = logs[1].read_text()
        assert "standby for partitions" in survivor_log, survivor_log
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        await publish(broker.bootstrap, [halves[1]], PARTITIONS, progress=False)
        await wait_converged(broker.bootstrap, expected["evses"], workers[1:], logs[1])
        await check_reconciled(broker.bootstrap, expected, engine)
        taken_over = [line for line in logs[1].read_text().splitlines() if "restored partition" in line][
            -PARTITIONS:
        ]  # the last rebalance restored all four partitions on the survivor
        starts = [int(line.rsplit(" ", 1)[1]) for line in taken_over]
        assert len(starts) == PARTITIONS and all(start > 0 for start in starts), taken_over
    finally:
        for worker in workers:
            stop(worker)
