"""Standby replicas: keep other workers' partitions warm in local RocksDB databases.

With ``PLUGSTREAM_STANDBY_REPLICAS=N`` (needs ``rocksdb://``) the aggregate consumer group
uses :func:`standby_assignor`: active partitions are spread evenly, stay with their owner
when they can (sticky), and a partition that must move goes to a member already holding a
standby copy; every partition also gets up to ``N`` standby members, never its owner. The group leader computes
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
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
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
    """What the last assignment told this member to keep warm, and what it reports it has.

    ``owned``/``held`` are filled by the engine: the partitions this member processes now and
    those it holds a local copy of (owned or standby). Each member sends them with its
    metadata, so the leader can keep partitions where they are (sticky) and hand a moving
    partition to a member that already holds it.
    """

    partitions: set[int] = field(default_factory=set)
    owned: Callable[[], set[int]] = field(default=set)
    held: Callable[[], set[int]] = field(default=set)


Previous = Mapping[str, tuple[set[int], set[int]]]  # member → (owned, held)


def plan_assignment(
    members: list[str], partitions: list[TopicPartition], replicas: int, previous: Previous | None = None
) -> tuple[dict[str, dict[str, list[int]]], dict[str, set[int]]]:
    """(active topic→partitions per member, standby partitions per member); pure, for tests.

    Balanced (counts differ by at most one), sticky (a partition stays with its owner while
    that owner is a member and within its share), and standby-first (a partition that must
    move goes to a member holding a copy when one has room). Standbys likewise stay where
    they are, then go to the least-loaded other members.
    """
    members = sorted(members)
    previous = previous or {}
    active: dict[str, dict[str, list[int]]] = {m: defaultdict(list) for m in members}
    standby: dict[str, set[int]] = {m: set() for m in members}
    if not members:
        return active, standby
    by_number = sorted(partitions)
    floor, extra = divmod(len(by_number), len(members))
    counts = dict.fromkeys(members, 0)
    at_ceiling = 0
    owner: dict[TopicPartition, str] = {}

    def room(member: str) -> bool:
        return counts[member] < floor or (counts[member] == floor and at_ceiling < extra)

    def give(tp: TopicPartition, member: str) -> None:
        nonlocal at_ceiling
        if counts[member] == floor:
            at_ceiling += 1
        counts[member] += 1
        owner[tp] = member
        active[member][tp.topic].append(tp.partition)

    # 1. keep partitions with their current owners, within each owner's share
    for tp in by_number:
        keepers = [m for m in members if tp.partition in previous.get(m, (set(), set()))[0]]
        if keepers and room(keepers[0]):
            give(tp, keepers[0])
    # 2. the rest: a member holding a copy when one has room, else the least loaded
    for tp in by_number:
        if tp in owner:
            continue
        holders = [m for m in members if tp.partition in previous.get(m, (set(), set()))[1] and room(m)]
        candidates = holders or [m for m in members if room(m)]
        give(tp, min(candidates, key=lambda m: (counts[m], m)))
    # 3. standbys: kept where they are, then spread so that one owner's partitions are warm
    #    on different members (its failure then spreads evenly), least loaded first
    wanted = min(replicas, len(members) - 1)
    load = dict.fromkeys(members, 0)
    pair: dict[tuple[str, str], int] = {}
    for tp in by_number:
        keepers: list[str] = []
        held_by = [m for m in members if m != owner[tp] and tp.partition in previous.get(m, (set(), set()))[1]]
        for member in held_by[:wanted]:
            keepers.append(member)
        start = members.index(owner[tp])
        ring = [members[(start + step) % len(members)] for step in range(1, len(members))]
        this_owner = owner[tp]
        for member in sorted(ring, key=lambda m: (pair.get((this_owner, m), 0), load[m], ring.index(m))):
            if len(keepers) >= wanted:
                break
            if member not in keepers:
                keepers.append(member)
        for member in keepers:
            standby[member].add(tp.partition)
            load[member] += 1
            pair[(this_owner, member)] = pair.get((this_owner, member), 0) + 1
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
            previous = {member: _reported(meta.user_data) for member, meta in members.items()}
            active, standby = plan_assignment(list(members), partitions, replicas, previous)
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
            held = set(plan.held()) | set(plan.partitions)
            report = {"owned": sorted(plan.owned()), "held": sorted(held)}
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), orjson.dumps(report))

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            data = orjson.loads(assignment.user_data) if assignment.user_data else {}
            plan.partitions = set(data.get("standby", ()))

    return StandbyAssignor


def _reported(user_data: bytes | None) -> tuple[set[int], set[int]]:
    """(owned, held) a member reported; nothing for metadata from an older version."""
    try:
        data = orjson.loads(user_data) if user_data else {}
        return set(data.get("owned", ())), set(data.get("held", ()))
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        return set(), set()


class StandbyTailer:
    """Follows the changelog partitions this worker is standby for, into local databases."""

    def __init__(self, bootstrap: str | Kafka, changelog: str, stores: Any, fetch_max_bytes: int = 262_144) -> None:
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
