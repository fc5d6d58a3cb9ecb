"""OCPP StatusNotification (1.6 and 2.0.1) as the fifth source (DESIGN §2)."""

from datetime import UTC, datetime

import pytest

from streams.models import EventTimeIssue, EventTimeSource, Scope, Status

from .helpers import RECORD_TIME, run, run_records


@pytest.fixture(scope="module")
def out():
    return run_records("ocpp", "ocpp_status_notifications.jsonl")


def test_ocpp16_one_evse_per_connector(out) -> None:
    first = out.records["ocpp:CP-16:1#1"]
    assert (first.evseUid, first.connectorId, first.scope) == ("ocpp:CP-16:1", "1", Scope.CONNECTOR)
    assert (first.status, first.rawStatus, first.live) == (Status.CHARGING, "Preparing", True)
    assert first.locationId == "ocpp:CP-16" and first.evseDisplayId == "CP-16/1"
    assert first.eventTime == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert out.records["ocpp:CP-16:2#2"].status is Status.CHARGING  # a bare payload, no frame


def test_ocpp16_times_and_error_codes(out) -> None:
    suspended = out.records["ocpp:CP-16:3#3"]
    assert (suspended.status, suspended.eventTimeSource, suspended.eventTimeIssue) == (
        Status.CHARGING,
        EventTimeSource.RECORD,
        EventTimeIssue.MISSING,
    )
    assert suspended.eventTime == RECORD_TIME
    faulted = out.records["ocpp:CP-16:4#4"]
    assert (faulted.status, faulted.rawStatus) == (Status.OUTOFORDER, "Faulted (errorCode=GroundFailure)")
    assert faulted.eventTime == datetime(2026, 3, 1, 8, 3, tzinfo=UTC)  # "+02": hour-only offset
    clock_not_set = out.records["ocpp:CP-16:5#5"]
    assert clock_not_set.eventTimeIssue == EventTimeIssue.BEFORE_2000 and clock_not_set.eventTime == RECORD_TIME


def test_connector_zero_is_the_whole_charge_point(out) -> None:
    whole = out.records["ocpp:CP-16#*"]
    assert (whole.scope, whole.evseUid, whole.status, whole.connectorId) == (
        Scope.CHARGE_POINT,
        "ocpp:CP-16",
        Status.INOPERATIVE,
        None,
    )
    station = out.records["ocpp:CP-201#*"]  # 2.0.1 evseId 0
    assert (station.scope, station.evseUid, station.status) == (Scope.CHARGE_POINT, "ocpp:CP-201", Status.INOPERATIVE)


def test_ocpp201_evse_and_connector_ids(out) -> None:
    occupied = out.records["ocpp:CP-201:1#1"]  # key "/ocpp/CP-201": the last path segment
    assert (occupied.evseUid, occupied.status, occupied.rawStatus) == ("ocpp:CP-201:1", Status.CHARGING, "Occupied")
    assert occupied.eventTime == datetime(2026, 3, 1, 10, 6, 0, 250000, tzinfo=UTC)
    assert out.records["ocpp:CP-201:2#1"].status is Status.AVAILABLE
    evse_wide = out.records["ocpp:CP-201:2#*"]  # connectorId 0 of evse 2: the whole EVSE
    assert (evse_wide.scope, evse_wide.evseUid, evse_wide.status) == (Scope.EVSE, "ocpp:CP-201:2", Status.OUTOFORDER)


def test_other_actions_and_replies_are_skipped_and_counted(out) -> None:
    # BootNotification, Heartbeat, CALLRESULT, CALLERROR, and a MeterValues inside a batch
    assert out.skipped == {"ocpp_other_action": 5}


def test_charge_point_id_from_wrapper_and_header(out) -> None:
    assert out.records["ocpp:CP-W:1#1"].status is Status.RESERVED
    assert out.records["ocpp:CP-H:1#1"].status is Status.AVAILABLE
    assert out.records["ocpp:CP-H:2#2"].status is Status.CHARGING  # Finishing


def test_bad_notifications_are_rejected_with_a_clear_kind(out) -> None:
    assert [(index, rejection.kind) for index, rejection in out.rejections] == [
        (16, "missing_id"),  # no key, no header, no wrapper: which charge point?
        (17, "missing_id"),  # no connectorId
        (18, "missing_status"),
        (19, "unrecognized_document"),  # a frame cut short
    ]
    assert "record key" in out.rejections[0][1].message


def test_wrapper_id_wins_over_header_wins_over_key() -> None:
    frame = [2, "1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}]
    both = run("ocpp", [frame], keys=["from-key"], headers=[{"ocpp-charge-point-id": "from-header"}])
    assert list(both.records) == ["ocpp:from-header:1#1"]
    wrapped = run("ocpp", [{"chargePointId": "from-field", "frame": frame}], keys=["from-key"])
    assert list(wrapped.records) == ["ocpp:from-field:1#1"]


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"connectorId": -1, "status": "Available"}, "invalid_id"),
        ({"connectorId": True, "status": "Available"}, "invalid_id"),
        ({"connectorId": 1, "status": 3}, "wrong_type"),
        ({"evseId": 1, "connectorId": "x", "connectorStatus": "Available"}, "invalid_id"),
        ([2, "1", 7, {}], "wrong_type"),
        ([9, "1", "StatusNotification", {}], "unrecognized_document"),
        ([2, "1", "StatusNotification", "not an object"], "not_an_object"),
        ({"chargePointId": "CP"}, "unrecognized_document"),
    ],
)
def test_malformed_notifications(payload: object, kind: str) -> None:
    assert run("ocpp", [payload], keys=["CP"]).kinds() == [kind]


def test_charge_point_ids_are_checked_like_any_id() -> None:
    frame = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    assert run("ocpp", [frame], keys=["CP\x00-1"]).kinds() == ["invalid_id"]
    assert run("ocpp", [frame], keys=["C" * 300]).kinds() == ["invalid_id"]


def test_unknown_status_words_are_unknown_not_rejected() -> None:
    out = run("ocpp", [{"connectorId": 1, "status": "Sleeping"}], keys=["CP"])
    assert out.records["ocpp:CP:1#1"].status is Status.UNKNOWN
