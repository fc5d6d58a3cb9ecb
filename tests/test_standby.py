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


def _owners(active: dict) -> dict[int, str]:
    return {p: m for m, topics in active.items() for p in topics.get("connector-status", [])}


def _round(members: list[str], previous: dict | None, replicas: int = 1) -> tuple[dict, dict, dict]:
    active, standby = plan_assignment(members, TPS, replicas, previous)
    owners = _owners(active)
    reported = {
        m: ({p for p, o in owners.items() if o == m}, {p for p, o in owners.items() if o == m} | standby[m])
        for m in members
    }
    return owners, standby, reported


def test_three_to_two_moves_only_the_leavers_partitions_to_their_standbys() -> None:
    owners3, standby3, reported = _round(["a", "b", "c"], None)
    survivors = {m: reported[m] for m in ("a", "b")}
    owners2, _, _ = _round(["a", "b"], survivors)
    moved = {p for p in owners2 if owners3[p] in ("a", "b") and owners2[p] != owners3[p]}
    assert moved == set()  # nothing a survivor owned moves
    for p in (p for p, m in owners3.items() if m == "c"):
        holders = {m for m in ("a", "b") if p in standby3[m]}
        assert owners2[p] in holders  # the leaver's partitions go where a warm copy is
    counts = sorted(sum(1 for o in owners2.values() if o == m) for m in ("a", "b"))
    assert counts == [3, 3]


def test_two_to_three_moves_just_enough_for_balance() -> None:
    owners2, _, reported = _round(["a", "b"], None)
    owners3, _, _ = _round(["a", "b", "c"], reported)
    moved = [p for p in owners3 if owners3[p] != owners2[p]]
    assert len(moved) == 2 and all(owners3[p] == "c" for p in moved)
    assert sorted(sum(1 for o in owners3.values() if o == m) for m in "abc") == [2, 2, 2]


def test_four_to_one_takes_everything_and_a_rejoin_is_stable() -> None:
    _, _, reported = _round(["a", "b", "c", "d"], None)
    owners1, standby1, reported1 = _round(["a"], {"a": reported["a"]})
    assert set(owners1.values()) == {"a"} and standby1 == {"a": set()}
    again, _, _ = _round(["a"], reported1)
    assert again == owners1


def test_standbys_stay_where_the_copies_are() -> None:
    _, standby, reported = _round(["a", "b", "c"], None)
    _, standby_again, _ = _round(["a", "b", "c"], reported)
    assert standby_again == standby


def test_metadata_reports_what_the_member_has() -> None:
    plan = StandbyPlan(owned=lambda: {1}, held=lambda: {1, 4})
    plan.partitions = {2}
    meta = standby_assignor(1, plan).metadata(["connector-status"])
    assert orjson.loads(meta.user_data) == {"owned": [1], "held": [1, 2, 4]}
