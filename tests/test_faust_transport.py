"""The ``plugstream://`` Faust driver's guards, without a broker: in-order delivery of agent
partitions (a record past the offset due is dropped with the rest of its batch and the
partition sought back; a persistent gap is a hole in the log) and commits bounded by what the
agents processed; a seek to the committed offsets that a rebalance cut short is done again;
and the agents' own gap check (:class:`ProcessingGaps`). Faust's own fetch, seek and commit
are replaced by recorders here; the integration tests (``tests/integration/test_scale_out.py``,
``test_two_workers.py``) run the real thing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.faust_transport import (
    SEEK_BACK_TRIES,
    ProcessingGaps,
    Verdict,
    deliver_in_order,
    limit_commits,
)

RAW = TP("raw.ocpi", 0)
CHANGELOG = TP("plugstream-faust-evse-state-changelog", 0)


@pytest.fixture
def consumer(tmp_path, monkeypatch) -> Any:
    import faust

    app = faust.App(
        "t", broker="plugstream://localhost:9", autodiscover=False, web_enabled=False, datadir=str(tmp_path)
    )
    deliver_in_order(app, {RAW.topic})
    consumer = app.consumer
    consumer.batches = []  # what the (replaced) Faust fetch hands out, one list per call
    consumer.sought = []
    consumer.committed = []

    async def getmany(self: Any, timeout: float) -> Any:
        for tp, offset in self.batches.pop(0) if self.batches else []:
            yield tp, SimpleNamespace(offset=offset)

    async def seek(self: Any, tp: Any, offset: int) -> None:
        self.sought.append((tp, offset))

    async def commit(self: Any, offsets: Any) -> bool:
        self.committed.append(dict(offsets))
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", getmany)
    monkeypatch.setattr(faust_aiokafka.Consumer, "_seek", seek)
    monkeypatch.setattr(faust_aiokafka.Consumer, "_commit", commit)
    return consumer


def fetch(consumer: Any, *batch: tuple[Any, int]) -> list[tuple[str, int]]:
    consumer.batches.append(list(batch))

    async def drain() -> list[tuple[str, int]]:
        return [(tp.topic, message.offset) async for tp, message in consumer.getmany(0.1)]

    return asyncio.run(drain())


def test_records_from_before_a_seek_are_dropped_and_the_partition_sought_back(consumer) -> None:
    asyncio.run(consumer.seek(RAW, 22))  # the rebalance's seek to the committed offset
    # a fetch in flight across the rebalance hands out records from the old position
    assert fetch(consumer, (RAW, 40), (RAW, 41), (CHANGELOG, 7)) == [(CHANGELOG.topic, 7)]
    assert consumer.sought == [(RAW, 22), (RAW, 22)]
    assert fetch(consumer, (RAW, 22), (RAW, 23)) == [(RAW.topic, 22), (RAW.topic, 23)]
    assert fetch(consumer, (RAW, 23), (RAW, 24)) == [(RAW.topic, 24)]  # redelivered: dropped


def test_other_topics_are_left_alone(consumer) -> None:
    asyncio.run(consumer.seek(CHANGELOG, 5))
    assert fetch(consumer, (CHANGELOG, 9), (CHANGELOG, 12)) == [(CHANGELOG.topic, 9), (CHANGELOG.topic, 12)]


def test_a_gap_that_stays_is_a_hole_in_the_log(consumer) -> None:
    asyncio.run(consumer.seek(RAW, 5))
    for _ in range(SEEK_BACK_TRIES):
        assert fetch(consumer, (RAW, 9), (RAW, 10)) == []
    assert fetch(consumer, (RAW, 9), (RAW, 10)) == [(RAW.topic, 9), (RAW.topic, 10)]
    assert consumer.sought == [(RAW, 5)] * (1 + SEEK_BACK_TRIES)


def test_commits_never_pass_what_the_agents_processed(consumer) -> None:
    processed = {RAW: 30}
    limit_commits(consumer.app, lambda topic, partition, offset: min(offset, processed[TP(topic, partition)]))
    assert asyncio.run(consumer._commit({RAW: 45})) is True
    assert consumer.committed == [{RAW: 30}]
    limit_commits(consumer.app, lambda topic, partition, offset: None)  # nothing processed yet
    assert asyncio.run(consumer._commit({RAW: 45})) is False
    assert consumer.committed == [{RAW: 30}]


def test_a_seek_to_committed_cut_short_by_a_rebalance_is_done_again(consumer, monkeypatch) -> None:
    """aiokafka raises half way when the assignment changes under it: partitions sought before
    the error would keep the offsets due from before the seek, and records between would be
    dropped as already delivered."""
    calls = []

    async def seek_to_committed(self: Any) -> dict[Any, int]:
        calls.append(1)
        if len(calls) == 1:
            raise IllegalStateError("No current assignment for partition connector-status[0]")
        return {RAW: 3}

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(faust_aiokafka.Consumer, "assignment", lambda self: {RAW})
    assert fetch(consumer, (RAW, 3), (RAW, 4)) == [(RAW.topic, 3), (RAW.topic, 4)]  # due is 5 now
    assert asyncio.run(consumer.seek_to_committed()) == {RAW: 3}
    assert len(calls) == 2
    assert fetch(consumer, (RAW, 3), (RAW, 4)) == [(RAW.topic, 3), (RAW.topic, 4)]  # delivered again


def test_a_seek_to_committed_that_keeps_failing_raises(consumer, monkeypatch) -> None:
    async def seek_to_committed(self: Any) -> dict[Any, int]:
        raise IllegalStateError("No current assignment")

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(faust_aiokafka.Consumer, "assignment", lambda self: {RAW})
    with pytest.raises(IllegalStateError):
        asyncio.run(consumer.seek_to_committed())


SLOT = ("raw.edrv", 1)


def verdicts(gaps: ProcessingGaps, *offsets: int) -> list[str]:
    """Feed events as an agent does: process what it is told to, and say what it was told."""
    told = []
    for offset in offsets:
        verdict = gaps.verdict(SLOT, offset)
        if verdict is Verdict.PROCESS:
            gaps.processed(SLOT, offset)
        told.append(verdict.value)
    return told


def test_events_in_order_are_processed() -> None:
    gaps = ProcessingGaps()
    assert verdicts(gaps, 7, 8, 9) == ["process"] * 3  # an assignment starts where its first event is
    assert gaps.due[SLOT] == 10


def test_events_dropped_after_delivery_are_sought_back_and_processed() -> None:
    """The CI failure this guards against: Faust skipped offsets 3-4 in a rebalance and the
    agent was handed 5 next; the seek back brings 3 again, after stale 6-7 still queued."""
    gaps = ProcessingGaps()
    assert verdicts(gaps, 0, 1, 2) == ["process"] * 3
    assert verdicts(gaps, 5) == ["seek"]
    assert verdicts(gaps, 6, 7) == ["skip", "skip"]  # already queued before the seek
    assert verdicts(gaps, 3, 4, 5, 6, 7) == ["process"] * 5
    assert gaps.due[SLOT] == 8


def test_a_new_pass_that_does_not_start_at_the_offset_due_seeks_again() -> None:
    gaps = ProcessingGaps()
    verdicts(gaps, 0, 1, 2)
    assert verdicts(gaps, 6, 7, 8) == ["seek", "skip", "skip"]
    assert verdicts(gaps, 7) == ["seek"]  # the position went back, but not to 3
    assert verdicts(gaps, 3, 4) == ["process", "process"]


def test_the_first_event_past_a_gap_again_is_a_hole_in_the_log() -> None:
    gaps = ProcessingGaps()
    verdicts(gaps, 0, 1, 2)
    assert verdicts(gaps, 5, 6) == ["seek", "skip"]
    assert verdicts(gaps, 5, 6) == ["process", "process"]  # 3-4 are not in the log: go on
    assert gaps.due[SLOT] == 7


def test_redeliveries_are_processed_and_a_revoked_partition_is_forgotten() -> None:
    gaps = ProcessingGaps()
    verdicts(gaps, 0, 1, 2)
    assert verdicts(gaps, 1) == ["process"]  # at-least-once: stage 2 skips what it took by offset
    assert gaps.due[SLOT] == 3  # a redelivery does not move the offset due back
    assert verdicts(gaps, 3) == ["process"]
    verdicts(gaps, 9)
    gaps.forget(SLOT)
    assert SLOT not in gaps.due
    assert verdicts(gaps, 40) == ["process"]  # the next assignment starts from the commits
