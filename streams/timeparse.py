"""Timestamp parsing for messy real-world feeds, and the event-time trust rule (DESIGN §3).

Accepted: ISO 8601 / RFC 3339 with ``T`` or a space, 0–9 fractional digits, ``Z``,
``±hh:mm``, ``±hhmm`` or ``±hh`` offsets, no zone (= UTC), Mongo extended JSON
(``{"$date": ...}``) and epoch numbers (seconds, or milliseconds when > 1e11).
Everything is returned as an aware UTC ``datetime`` truncated to milliseconds, because the
Avro ``timestamp-millis`` type cannot carry more and a round trip must be exact.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from .vocabulary import EventTimeIssue, EventTimeSource

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TRUST_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)


class UnparseableTime(ValueError):
    """The value is present but is not a timestamp we can read."""


_MAX_OFFSET = timedelta(hours=18)


def _parse_text(text: str) -> datetime:
    # Not cached here: repeats within a document are memoized per document (NormalizeContext),
    # and across a large feed an LRU almost never hits but costs on every miss.
    text = text.strip()
    if len(text) >= 16 and text[10] in "Tt ":
        # fast path: C fromisoformat covers most spellings (Z, ±hh[:mm], 0–7 fraction digits)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            micros = parsed.microsecond % 1000  # below Avro's millisecond resolution: dropped
            zone = parsed.tzinfo
            if zone is UTC:  # "Z" / "+00:00": the common case, no offset arithmetic
                if micros:
                    parsed = parsed.replace(microsecond=parsed.microsecond - micros)
            elif zone is None:  # no zone means UTC (DESIGN §3)
                parsed = parsed.replace(tzinfo=UTC, microsecond=parsed.microsecond - micros)
            else:
                offset = parsed.utcoffset()
                if offset is not None and abs(offset) > _MAX_OFFSET:
                    raise UnparseableTime(f"offset out of range in {text[:60]!r}")
                try:
                    parsed = parsed.astimezone(UTC)
                except OverflowError:
                    raise UnparseableTime(f"out of range: {text[:60]!r}") from None
                if micros:
                    parsed = parsed.replace(microsecond=parsed.microsecond - micros)
            return parsed
    match = _ISO.fullmatch(text)
    if match is None:
        raise UnparseableTime(f"not an ISO 8601 timestamp: {text[:60]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            millis * 1000,
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise UnparseableTime(f"impossible date {text[:60]!r}: {exc}") from None
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        if offset > _MAX_OFFSET:
            raise UnparseableTime(f"offset out of range in {text[:60]!r}")
        try:
            parsed = parsed - sign * offset
        except OverflowError:
            raise UnparseableTime(f"out of range: {text[:60]!r}") from None
    return parsed


def parse_timestamp(value: Any) -> datetime | None:
    """Parse one source timestamp. ``None``/empty → ``None``; garbage → ``UnparseableTime``."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, bool):
        raise UnparseableTime("a boolean is not a timestamp")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise UnparseableTime("not a finite number")
        millis = int(value if abs(value) > 1e11 else value * 1000)
        try:
            return EPOCH + timedelta(milliseconds=millis)
        except OverflowError:
            raise UnparseableTime(f"epoch value out of range: {value}") from None
    if isinstance(value, dict) and "$date" in value:
        inner = value["$date"]
        if isinstance(inner, dict) and "$numberLong" in inner:
            try:
                inner = int(inner["$numberLong"])
            except (TypeError, ValueError):
                raise UnparseableTime("bad $numberLong") from None
        return parse_timestamp(inner)
    raise UnparseableTime(f"unsupported timestamp type {type(value).__name__}")


def to_millis(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (exact for ms-truncated values)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_millis(millis: int) -> datetime:
    return EPOCH + timedelta(milliseconds=millis)


def rfc3339(moment: datetime) -> str:
    """``2024-05-01T12:00:00.000Z`` — the one textual form used in JSON outputs."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def resolve_event_time(
    candidates: tuple[Any, ...], record_time: datetime, trust_until: datetime
) -> tuple[datetime, EventTimeSource, EventTimeIssue | None]:
    """Pick the event time from the first present candidate, or fall back to the record time.

    A time before 2000-01-01 or later than ``trust_until`` (the record time plus the allowed
    clock skew) is not trusted.
    The first *present* candidate decides: a connector time that is garbage does not
    silently fall through to the EVSE time, it is reported.
    """
    for value in candidates:
        if value is None or value == "":
            continue
        try:
            moment = parse_timestamp(value)
        except UnparseableTime:
            return record_time, EventTimeSource.RECORD, EventTimeIssue.UNPARSEABLE
        if moment is None:  # an empty Mongo ``{"$date": ""}``
            return record_time, EventTimeSource.RECORD, EventTimeIssue.UNPARSEABLE
        if moment < TRUST_FLOOR:
            return record_time, EventTimeSource.RECORD, EventTimeIssue.BEFORE_2000
        if moment > trust_until:
            return record_time, EventTimeSource.RECORD, EventTimeIssue.AFTER_RECORD_TIME
        return moment, EventTimeSource.SOURCE, None
    return record_time, EventTimeSource.RECORD, EventTimeIssue.MISSING
