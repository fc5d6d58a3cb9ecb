"""The pure core: dedupe rules (DESIGN §4), availability (§5) and window folding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.core import EvseState, Policy, apply_record, availability, new_evse
from streams.models import ConnectorStatus
from streams.timeparse import to_millis

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MIN = 60_000


def rec(
    uid: str,
    status: str,
    minute: float,
    *,
    evse: str = "ocpi:E",
    record_minute: float | None = None,
    scope: str = "CONNECTOR",
    snapshot: list[str] | None = None,
    raw: str | None = None,
    **attrs,
) -> ConnectorStatus:
    event = T0 + timedelta(minutes=minute)
    record = T0 + timedelta(minutes=minute if record_minute is None else record_minute)
    values = {
        "source": "ocpi",
        "connectorUid": uid,
        "evseUid": evse,
        "scope": scope,
        "status": status,
        "rawStatus": raw or status,
        "live": True,
        "eventTime": event,
        "eventTimeSource": "SOURCE",
        "recordTime": record,
        "snapshotConnectorUids": snapshot,
        "standard": "IEC_62196_T2",
        "maxPowerKw": 22.0,
        "powerClass": 3,
        **attrs,
    }
    return ConnectorStatus.model_validate(values)


POLICY = Policy(window_ms=5 * MIN, grace_ms=0, staleness_ms=30 * MIN)


def run(*records: ConnectorStatus, policy: Policy = POLICY) -> tuple[EvseState, list]:
    evse = new_evse(records[0])
    outcomes = [apply_record(evse, r, policy) for r in records]
    return evse, outcomes


def counters(outcomes) -> dict[str, int]:
    total: dict[str, int] = {}
    for outcome in outcomes:
        for name, n in outcome.counters.items():
            total[name] = total.get(name, 0) + n
    return total


def test_duplicates_and_stale_are_dropped_and_counted() -> None:
    evse, outcomes = run(
        rec("c1", "AVAILABLE", 0),
        rec("c1", "AVAILABLE", 1),
        rec("c1", "CHARGING", 2),
        rec("c1", "AVAILABLE", 1.5),
    )
    assert [len(o.changes) for o in outcomes] == [1, 0, 1, 0]
    assert counters(outcomes) == {"accepted": 2, "duplicates": 1, "stale": 1}
    assert evse.connectors["c1"].status == "CHARGING"
    assert outcomes[2].changes[0].previous_status == "AVAILABLE"
    view = availability(evse, to_millis(T0 + timedelta(minutes=2)), POLICY)
    assert view["lastUpdateTimestamp"] == to_millis(T0 + timedelta(minutes=2))
    assert view["lastSeenTimestamp"] == to_millis(T0 + timedelta(minutes=2))


def test_duplicate_never_moves_last_update_but_moves_last_seen() -> None:
    evse, _ = run(rec("c1", "AVAILABLE", 0), rec("c1", "AVAILABLE", 7))
    view = availability(evse, None, POLICY)
    assert view["lastUpdateTimestamp"] == to_millis(T0)
    assert view["lastSeenTimestamp"] == to_millis(T0 + timedelta(minutes=7))


def test_raw_status_alone_is_not_a_change() -> None:
    _, outcomes = run(rec("c1", "CHARGING", 0, raw="PREPARING"), rec("c1", "CHARGING", 1, raw="CHARGING"))
    assert counters(outcomes) == {"accepted": 1, "duplicates": 1}


def test_attribute_change_is_a_change() -> None:
    _, outcomes = run(rec("c1", "AVAILABLE", 0), rec("c1", "AVAILABLE", 1, maxPowerKw=11.0))
    assert outcomes[1].changes[0].kind == "ATTRIBUTES"


def test_equal_event_times_later_record_wins() -> None:
    evse, outcomes = run(
        rec("c1", "AVAILABLE", 0), rec("c1", "CHARGING", 0), rec("c1", "RESERVED", 0, record_minute=-1)
    )
    assert evse.connectors["c1"].status == "CHARGING"  # same event time: later in log wins
    assert counters(outcomes) == {"accepted": 2, "stale": 1}  # older record time at equal event time


def test_last_update_never_goes_backwards() -> None:
    evse, _ = run(rec("c1", "AVAILABLE", 5), rec("c2", "CHARGING", 1))
    assert availability(evse, None, POLICY)["lastUpdateTimestamp"] == to_millis(T0 + timedelta(minutes=5))


def test_snapshot_removes_connectors_it_no_longer_lists() -> None:
    evse, outcomes = run(
        rec("c1", "AVAILABLE", 0, snapshot=["c1", "c2"]),
        rec("c2", "AVAILABLE", 0, snapshot=["c1", "c2"]),
        rec("c1", "CHARGING", 3, snapshot=["c1"]),
    )
    assert evse.connectors["c2"].status == "REMOVED"
    removal = [c for c in outcomes[2].changes if c.kind == "REMOVED_BY_SNAPSHOT"]
    assert [(c.connector_uid, c.event_time, c.previous_status) for c in removal] == [
        ("c2", to_millis(T0 + timedelta(minutes=3)), "AVAILABLE")
    ]
    view = availability(evse, None, POLICY)
    assert (view["connectorsTotal"], view["available"], view["statusCounts"]["REMOVED"]) == (1, 0, 1)


def test_older_snapshot_does_not_remove_a_newer_connector() -> None:
    evse, _ = run(rec("c2", "AVAILABLE", 5), rec("c1", "AVAILABLE", 2, snapshot=["c1"]))
    assert evse.connectors["c2"].status == "AVAILABLE"


def test_evse_scope_applies_to_known_connectors() -> None:
    evse, outcomes = run(
        rec("c1", "AVAILABLE", 0),
        rec("c2", "AVAILABLE", 0),
        rec("ocpi:E#*", "OUTOFORDER", 1, scope="EVSE", standard=None),
    )
    assert {uid: c.status for uid, c in evse.connectors.items()} == {"c1": "OUTOFORDER", "c2": "OUTOFORDER"}
    assert evse.connectors["c1"].attributes[1] == "IEC_62196_T2"  # attributes kept
    assert len(outcomes[2].changes) == 2


def test_empty_evse_snapshot_removes_everything() -> None:
    evse, _ = run(rec("c1", "AVAILABLE", 0), rec("ocpi:E#*", "OUTOFORDER", 1, scope="EVSE", snapshot=[]))
    assert evse.connectors["c1"].status == "REMOVED"


def test_availability_breakdowns_and_staleness() -> None:
    evse, _ = run(
        rec("c1", "AVAILABLE", 0, maxPowerKw=150.0, powerClass=4, standard="IEC_62196_T2_COMBO"),
        rec("c2", "CHARGING", 0),
        rec("c3", "AVAILABLE", 0),
    )
    view = availability(evse, to_millis(T0 + timedelta(minutes=29)), POLICY)
    assert view["byStandard"] == {
        "IEC_62196_T2_COMBO": {"total": 1, "available": 1},
        "IEC_62196_T2": {"total": 2, "available": 1},
    }
    assert view["byPowerClass"] == {"4": {"total": 1, "available": 1}, "3": {"total": 2, "available": 1}}
    assert view["maxAvailablePowerKw"] == 150.0 and view["stale"] is False
    assert availability(evse, to_millis(T0 + timedelta(minutes=31)), POLICY)["stale"] is True


def test_state_survives_json_round_trip() -> None:
    import orjson

    evse, _ = run(rec("c1", "AVAILABLE", 0), rec("c2", "CHARGING", 1))
    restored = EvseState.from_json(orjson.loads(orjson.dumps(evse.to_json())))
    assert restored == EvseState.from_json(evse.to_json())
    apply_record(restored, rec("c1", "AVAILABLE", 2), POLICY)  # still dedupes after restore
    assert availability(restored, None, POLICY)["lastUpdateTimestamp"] == to_millis(T0 + timedelta(minutes=1))


def test_window_closes_on_watermark_with_time_weighted_share() -> None:
    # c1 AVAILABLE from 10:00, c2 CHARGING from 10:00; c2 becomes AVAILABLE at 10:03; 10:06 closes [10:00,10:05)
    _evse, outcomes = run(
        rec("c1", "AVAILABLE", 0), rec("c2", "CHARGING", 0), rec("c2", "AVAILABLE", 3), rec("c1", "AVAILABLE", 6)
    )
    closed = [w for o in outcomes for w in o.closed_windows]
    assert len(closed) == 1
    window = closed[0]
    assert (window["windowStart"], window["windowEnd"]) == (to_millis(T0), to_millis(T0) + 5 * MIN)
    assert (window["changes"], window["available"], window["connectorsTotal"]) == (3, 2, 2)
    # never fewer than 1 available while the EVSE had connectors (before its first report it had
    # none: that moment does not count as "0 available", or min 0 would sit beside share 0.7)
    assert (window["minAvailable"], window["maxAvailable"]) == (1, 2)
    assert window["lastUpdateTimestamp"] == to_millis(T0) + 3 * MIN
    # connector-time: c1 5 min available, c2 3 min charging + 2 min available → 7/10
    assert window["availableShare"] == pytest.approx(0.7)


def test_state_is_carried_into_the_next_window_and_late_records_are_counted() -> None:
    evse, outcomes = run(
        rec("c1", "AVAILABLE", 0), rec("c1", "CHARGING", 7), rec("c2", "AVAILABLE", 12), rec("c3", "AVAILABLE", 2)
    )
    closed = [w for o in outcomes for w in o.closed_windows]
    second = closed[1]
    assert second["windowStart"] == to_millis(T0) + 5 * MIN
    # [10:05,10:10): c1 AVAILABLE 2 min (carried in), CHARGING 3 min
    assert second["availableShare"] == pytest.approx(0.4)
    assert (second["minAvailable"], second["maxAvailable"]) == (0, 1)
    assert outcomes[3].counters == {"accepted": 1, "late": 1}
    assert evse.connectors["c3"].status == "AVAILABLE"  # late for windows, still in the table


def test_grace_keeps_a_window_open() -> None:
    policy = Policy(window_ms=5 * MIN, grace_ms=2 * MIN)
    _, outcomes = run(
        rec("c1", "AVAILABLE", 0),
        rec("c1", "CHARGING", 6),
        rec("c2", "AVAILABLE", 4),
        rec("c1", "AVAILABLE", 7),
        policy=policy,
    )
    assert "late" not in outcomes[2].counters
    closed = [w for o in outcomes for w in o.closed_windows]
    assert len(closed) == 1 and closed[0]["changes"] == 2  # c1 NEW and c2 NEW (the latter within grace)


def test_window_invariants_hold_on_a_simulated_log() -> None:
    """Every closed window: min <= available <= max <= connectors; share 1.0 means no moment
    without an available connector, share 0 means none was ever available."""
    from streams.adapters import NormalizeContext, normalize_document
    from streams.core import Policy, apply_record, new_evse
    from streams.simulate import make_log
    from streams.timeparse import from_millis

    policy = Policy(window_ms=60_000)
    evses: dict = {}
    windows = []
    for entry in make_log(evse_count=40, records=3000, seed=17):
        key = entry.get("key")
        ctx = NormalizeContext(record_time=from_millis(entry["timestamp"]), key=key and key.encode())
        for record in normalize_document(entry["source"], entry["payload"], ctx).records:
            evse = evses.get(record.evseUid) or evses.setdefault(record.evseUid, new_evse(record))
            windows += apply_record(evse, record, policy).closed_windows
    assert len(windows) > 500
    for w in windows:
        assert w["minAvailable"] <= w["available"] <= w["maxAvailable"] <= max(w["connectorsTotal"], w["maxAvailable"])
        if w["availableShare"] == 1.0:
            assert w["minAvailable"] >= 1, w
        if w["availableShare"] == 0.0:
            assert w["maxAvailable"] == 0, w
