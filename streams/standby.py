"""Standby replicas: keep other workers' partitions warm in local RocksDB databases.

With ``PLUGSTREAM_STANDBY_REPLICAS=N`` (needs ``rocksdb://``) the aggregate consumer group
uses :func:`standby_assignor`: active partitions go round-robin over the sorted members (as
aiokafka's round-robin assignor does), and every partition also gets up to ``N`` standby
members — the next members in the same ring, never its owner. The group leader computes
this once and ships each member its standby list in the assignment's ``user_data``, so all
members agree without extra coordination.

Each worker's :class:`StandbyTailer` follows the changelog partitions it is standby for and
writes them into the same local databases the active path uses, checkpointing at every
``META`` record it applies (the last record of each committed batch). When a rebalance hands
it one of those partitions, restore starts from that checkpoint and only replays the
changelog written since: fail-over costs the tail, not the whole table.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from . import kafka
from .kafka import Kafka
from .topics import DRAIN_FETCH, fetch_limits

log = logging.getLogger("plugstream.standby")


@dataclass(slots=True)
class StandbyPlan:
    """What the last assignment told this member to keep warm."""

    partitions: set[int] = field(default_factory=set)


def plan_assignment(
    members: list[str], partitions: list[TopicPartition], replicas: int
) -> tuple[dict[str, dict[str, list[int]]], dict[str, set[int]]]:
    """(active topic→partitions per member, standby partitions per member); pure, for tests."""
    members = sorted(members)
    active: dict[str, dict[str, list[int]]] = {m: defaultdict(list) for m in members}
    standby: dict[str, set[int]] = {m: set() for m in members}
    ring = itertools.cycle(range(len(members)))
    for tp in sorted(partitions):
        owner = next(ring)
        active[members[owner]][tp.topic].append(tp.partition)
        for step in range(1, min(replicas, len(members) - 1) + 1):
            standby[members[(owner + step) % len(members)]].add(tp.partition)
    return active, standby


def standby_assignor(replicas: int, plan: StandbyPlan) -> type[AbstractPartitionAssignor]:
    """An assignor class bound to this worker's :class:`StandbyPlan` (aiokafka calls it on the class)."""

    class StandbyAssignor(AbstractPartitionAssignor):
        name = "plugstream-standby"
        version = 0

        @classmethod
        def assign(
            cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = sorted({topic for meta in members.values() for topic in meta.subscription})
            partitions = [
                TopicPartition(topic, p) for topic in topics for p in sorted(cluster.partitions_for_topic(topic) or ())
            ]
            active, standby = plan_assignment(list(members), partitions, replicas)
            return {
                member: ConsumerProtocolMemberAssignment(
                    cls.version,
                    sorted((topic, sorted(parts)) for topic, parts in active[member].items()),
                    orjson.dumps({"standby": sorted(standby[member])}),
                )
                for member in members
            }

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            data = orjson.loads(assignment.user_data) if assignment.user_data else {}
            plan.partitions = set(data.get("standby", ()))

    return StandbyAssignor


class StandbyTailer:
    """Follows the changelog partitions this worker is standby for, into local databases."""

    def __init__(self, bootstrap: str | Kafka, changelog: str, stores: Any, fetch_max_bytes: int = 1_048_576) -> None:
        self.bootstrap = bootstrap
        self.fetch_max_bytes = fetch_max_bytes
        self.changelog = changelog
        self.stores = stores  # engine.OpenStores: shared with the active path
        self.partitions: set[int] = set()
        self.applied_records = 0
        self._consumer: Any = None
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self._consumer = kafka.consumer(
            self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **DRAIN_FETCH,
            **fetch_limits(self.fetch_max_bytes),
        )
        await self._consumer.start()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()

    async def set_partitions(self, partitions: set[int], keep_open: set[int]) -> None:
        """Follow exactly ``partitions`` from now on; stores of dropped ones are closed unless
        the active path is about to take them (``keep_open``)."""
        consumer = self._consumer
        dropped = self.partitions - partitions
        for partition in dropped - keep_open:
            self.stores.close(partition)
        starts = {}
        for partition in partitions - self.partitions:
            offset, _ = self.stores.open(partition).checkpoint()
            starts[partition] = offset + 1
        self.partitions = set(partitions)
        consumer.assign([TopicPartition(self.changelog, p) for p in sorted(self.partitions)])
        for partition, start in starts.items():
            consumer.seek(TopicPartition(self.changelog, partition), start)
        if partitions:
            log.info("standby for partitions %s", sorted(partitions))
        self._changed.set()

    async def run(self) -> None:
        from .engine import META_KEY

        try:
            while not self._stop.is_set():
                if not self.partitions:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, messages in batches.items():
                    if tp.partition not in self.partitions:
                        continue  # handed to the active path while this batch was in flight
                    store = self.stores.open(tp.partition)
                    checkpoint = None
                    for message in messages:
                        if message.key == META_KEY:
                            checkpoint = (message.value, message.offset)
                        else:
                            store.load_raw(message.key, message.value)
                    self.applied_records += len(messages)
                    if checkpoint is not None:
                        store.commit({}, *checkpoint)  # states are in; move the checkpoint
        finally:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            for partition in self.partitions:
                self.stores.close(partition)
