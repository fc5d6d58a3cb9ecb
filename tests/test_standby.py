"""The standby assignment: every partition has one owner and up to N other members keeping it warm."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from streams.standby import StandbyPlan, plan_assignment, standby_assignor

TPS = [TopicPartition("connector-status", p) for p in range(6)]


@pytest.mark.parametrize("members", [1, 2, 3, 4])
@pytest.mark.parametrize("replicas", [1, 2, 5])
def test_each_partition_has_one_owner_and_min_n_others_standby(members: int, replicas: int) -> None:
    names = [f"m{i}" for i in range(members)]
    active, standby = plan_assignment(names, TPS, replicas)
    owners = {p: m for m, topics in active.items() for p in topics.get("connector-status", [])}
    assert sorted(owners) == list(range(6))  # every partition owned exactly once
    for tp in TPS:
        keepers = [m for m, parts in standby.items() if tp.partition in parts]
        assert owners[tp.partition] not in keepers
        assert len(keepers) == min(replicas, members - 1)
    counts = [len(t.get("connector-status", [])) for t in active.values()]
    assert max(counts) - min(counts) <= 1  # round-robin balance


def test_two_workers_keep_each_others_partitions() -> None:
    active, standby = plan_assignment(["b", "a"], TPS[:4], 1)
    assert dict(active["a"]) == {"connector-status": [0, 2]}
    assert dict(active["b"]) == {"connector-status": [1, 3]}
    assert standby == {"a": {1, 3}, "b": {0, 2}}


class FakeCluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(4))


def test_the_assignor_ships_each_member_its_standby_list() -> None:
    plan = StandbyPlan()
    assignor = standby_assignor(1, plan)
    members = {m: ConsumerProtocolMemberMetadata(0, ["connector-status"], b"") for m in ("a", "b")}
    assignments = assignor.assign(FakeCluster(), members)
    assert assignments["a"].partitions() == [
        TopicPartition("connector-status", 0),
        TopicPartition("connector-status", 2),
    ]
    assert orjson.loads(assignments["b"].user_data) == {"standby": [0, 2]}
    # what a member does with the assignment it receives (after the encode/decode round trip)
    encoded = assignments["b"].encode()
    assignor.on_assignment(ConsumerProtocolMemberAssignment.decode(encoded))
    assert plan.partitions == {0, 2}
    assignor.on_assignment(ConsumerProtocolMemberAssignment(0, [], b""))
    assert plan.partitions == set()
