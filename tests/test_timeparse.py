from datetime import UTC, datetime, timedelta

import pytest

from streams.models import EventTimeIssue, EventTimeSource
from streams.timeparse import (
    UnparseableTime,
    from_millis,
    parse_timestamp,
    resolve_event_time,
    rfc3339,
    to_millis,
)

T = datetime(2024, 4, 26, 12, 35, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-04-26T12:35:02Z", T),
        ("2024-04-26T12:35:02.000Z", T),
        ("2024-04-26T14:35:02+02:00", T),
        ("2024-04-26T14:35:02+0200", T),  # HERE: ±hhmm without colon
        ("2024-04-26T14:35:02+02", T),  # hour-only offset (Monta emulator)
        ("2024-04-26T10:35:02-02:00", T),
        ("2024-04-26T12:35:02", T),  # no zone = UTC
        ("2024-04-26 12:35:02", T),  # space separator (voltrelli)
        ("2024-04-26T12:35:02.1234567+00:00", T.replace(microsecond=123000)),  # 7 digits
        ("2024-04-26T12:35:02.123456789Z", T.replace(microsecond=123000)),  # 9 digits
        ("2024-04-26T12:35:02.374605", T.replace(microsecond=374000)),  # truncated to ms
        ("2024-04-26T12:35", T.replace(second=0)),
        (" 2024-04-26T12:35:02Z ", T),
    ],
)
def test_parses_real_world_spellings(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


def test_parses_mongo_and_epoch_forms() -> None:
    assert parse_timestamp({"$date": "2024-04-26T12:35:02Z"}) == T
    assert parse_timestamp({"$date": {"$numberLong": str(to_millis(T))}}) == T
    assert parse_timestamp(to_millis(T)) == T  # epoch ms
    assert parse_timestamp(to_millis(T) / 1000) == T  # epoch seconds


@pytest.mark.parametrize(
    "bad",
    [
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-04-26",
        True,
        float("nan"),
        [],
        {"x": 1},
        "2024-04-26T12:35:02+25:00",
    ],
)
def test_rejects_garbage(bad: object) -> None:
    with pytest.raises(UnparseableTime):
        parse_timestamp(bad)


def test_empty_is_absent() -> None:
    assert parse_timestamp(None) is None
    assert parse_timestamp("") is None


def test_millis_round_trip_and_rfc3339() -> None:
    moment = T.replace(microsecond=456000)
    assert from_millis(to_millis(moment)) == moment
    assert rfc3339(moment) == "2024-04-26T12:35:02.456Z"


RECORD = datetime(2026, 1, 1, tzinfo=UTC)
SKEW = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        (("2025-12-31T23:00:00Z",), (datetime(2025, 12, 31, 23, tzinfo=UTC), EventTimeSource.SOURCE, None)),
        ((None, "2025-12-31T23:00:00Z"), (datetime(2025, 12, 31, 23, tzinfo=UTC), EventTimeSource.SOURCE, None)),
        (("2026-01-01T00:04:59Z",), (datetime(2026, 1, 1, 0, 4, 59, tzinfo=UTC), EventTimeSource.SOURCE, None)),
        (("2026-01-01T00:05:01Z",), (RECORD, EventTimeSource.RECORD, EventTimeIssue.AFTER_RECORD_TIME)),
        (("1970-01-01T00:01:10.932Z",), (RECORD, EventTimeSource.RECORD, EventTimeIssue.BEFORE_2000)),
        (("0001-01-01T00:00:00",), (RECORD, EventTimeSource.RECORD, EventTimeIssue.BEFORE_2000)),
        (("garbage", "2025-12-31T23:00:00Z"), (RECORD, EventTimeSource.RECORD, EventTimeIssue.UNPARSEABLE)),
        ((None, ""), (RECORD, EventTimeSource.RECORD, EventTimeIssue.MISSING)),
        (({"$date": ""}, "2025-12-31T23:00:00Z"), (RECORD, EventTimeSource.RECORD, EventTimeIssue.UNPARSEABLE)),
        ((True,), (RECORD, EventTimeSource.RECORD, EventTimeIssue.UNPARSEABLE)),
        (("   ",), (RECORD, EventTimeSource.RECORD, EventTimeIssue.UNPARSEABLE)),
    ],
)
def test_event_time_trust_rule(candidates: tuple, expected: tuple) -> None:
    assert resolve_event_time(candidates, RECORD, RECORD + SKEW) == expected


def test_context_memo_does_not_alias_equal_values_of_other_types() -> None:
    """``True == 1`` and they hash alike, but one is unparseable and the other is 1970."""
    from streams.adapters import NormalizeContext

    ctx = NormalizeContext(record_time=T)
    assert ctx.event_time((1,))[2] is EventTimeIssue.BEFORE_2000
    assert ctx.event_time((True,))[2] is EventTimeIssue.UNPARSEABLE
    assert ctx.event_time((1.0,))[2] is EventTimeIssue.BEFORE_2000
    assert ctx.event_time(({"$date": "2024-04-26T12:35:02Z"},)) == (T, EventTimeSource.SOURCE, None)
