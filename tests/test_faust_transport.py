"""The ``plugstream://`` Faust driver's guards, without a broker: in-order delivery of agent
partitions (a record past the offset due is dropped with the rest of its batch and the
partition sought back; a persistent gap is a hole in the log) and commits bounded by what the
agents processed. Faust's own fetch, seek and commit are replaced by recorders here; the
integration tests (``tests/integration/test_scale_out.py``) run the real thing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.faust_transport import SEEK_BACK_TRIES, deliver_in_order, limit_commits

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
