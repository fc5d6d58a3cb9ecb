"""The rocksdb:// store through the real pipeline: same tables as memory://, warm restarts
that replay only the changelog's tail, and a local database that outlived its changelog."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.engine import NativeEngine
from streams.runner import publish
from streams.simulate import make_log

from .test_pipeline import run_log
from .workers import PARTITIONS, write_log

pytestmark = pytest.mark.integration


async def run(bootstrap: str, settings: Settings, paths: list[Path]) -> tuple[NativeEngine, list[dict], dict]:
    pipeline = NativeEngine(settings, bootstrap)
    await pipeline.start()
    try:
        report = await publish(bootstrap, paths, settings.partitions, progress=False)
        await pipeline.wait_processed(report.raw_end_offsets, timeout=90)
        return pipeline, pipeline.evses(), pipeline.aggregate.counters()
    finally:
        await pipeline.stop()


@pytest.fixture
def halves(tmp_path: Path) -> tuple[Path, Path]:
    entries = make_log(evse_count=120, records=3000, seed=5)
    return write_log(tmp_path / "a.jsonl", entries[:1500]), write_log(tmp_path / "b.jsonl", entries[1500:])


async def test_rocksdb_store_gives_the_memory_tables_and_restarts_warm(broker, halves, tmp_path: Path) -> None:
    first, second = halves
    with EmbeddedBroker() as reference:
        _, expected = await run_log(reference.bootstrap, [first, second], partitions=PARTITIONS)

    settings = Settings(partitions=PARTITIONS, store="rocksdb://", state_dir=tmp_path / "state", store_cache_evses=16)
    cold, _, _ = await run(broker.bootstrap, settings, [first])
    assert cold.aggregate.restored_records == 0  # nothing local, empty changelog
    assert any((tmp_path / "state" / "plugstream-6066").glob("p*/CURRENT"))

    warm, evses, counters = await run(broker.bootstrap, settings, [second])
    # the local databases were at the changelog's end: nothing had to be replayed
    assert warm.aggregate.restored_records == 0
    assert evses == expected["evses"]
    # (an in-process pipeline has no consumer group, so its second run normalizes the first
    # half again: those redeliveries land in duplicates/stale, and accepted must not move)
    assert counters["accepted"] == expected["stats"]["accepted"]


async def test_a_memory_restart_replays_the_whole_changelog(broker, halves) -> None:
    first, second = halves
    settings = Settings(partitions=PARTITIONS)
    await run(broker.bootstrap, settings, [first])
    again, _, _ = await run(broker.bootstrap, settings, [second])
    assert again.aggregate.restored_records > 0  # the contrast the test above relies on


async def test_local_state_ahead_of_a_recreated_changelog_is_rebuilt(halves, tmp_path: Path) -> None:
    first, second = halves
    settings = Settings(partitions=PARTITIONS, store="rocksdb://", state_dir=tmp_path / "state")
    with EmbeddedBroker() as old:
        await run(old.bootstrap, settings, [first, second])
    with EmbeddedBroker() as reference:
        _, expected = await run_log(reference.bootstrap, [second], partitions=PARTITIONS)
    with EmbeddedBroker() as new:  # same state directory, empty changelog: must not resurrect old EVSEs
        _, evses, _ = await run(new.bootstrap, settings, [second])
    assert evses == expected["evses"]
