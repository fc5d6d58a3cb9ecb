"""Replay of historical logs, the embedded end-to-end run (``--dump``) and snapshots.

Log formats: JSON Lines of ``{"source", "payload", "timestamp"}`` (``payload`` a JSON value
or a string holding JSON; ``timestamp`` RFC 3339 or epoch ms), optionally with ``"key"`` (the
Kafka record key, text) and ``"headers"`` (``{"name": "text"}`` or ``[["name", "text"], …]``),
or Avro container files with the same fields. Records are published to ``raw.<source>``
with their original timestamps. A line's own ``key`` is the record key (sources read ids
from it: OCPI push paths, OCPP charge point ids); otherwise each record is keyed by the
first EVSE it names (found with the source's adapter), so every report of an EVSE lands in
one raw partition and keeps its log order whatever the partition count; documents naming no
EVSE go unkeyed to the partition of their source's name.

A log line that cannot be read (bad JSON, unknown source, missing payload) is not dropped:
it goes to ``plugstream.dlq`` with stage ``replay`` and its line number as offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import orjson

from . import avro
from .adapters import REGISTRY, NormalizeContext, Rejection, normalize_bytes
from .config import Settings
from .core import is_stale, partition_key
from .engine import Batcher, partition_for, producer_for
from .kafka import Kafka
from .timeparse import UnparseableTime, parse_timestamp, to_millis
from .topics import (
    DLQ,
    EVSE_AVAILABILITY,
    EVSE_AVAILABILITY_WINDOWED,
    RAW_TOPICS,
    read_to_end,
)

log = logging.getLogger("plugstream.runner")


@dataclass(slots=True)
class LogEntry:
    path: str
    line: int
    source: str | None
    payload: bytes
    timestamp_ms: int | None
    error: Rejection | None = None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None


def _text_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"{what} must be text")


def _log_headers(value: Any) -> list[tuple[str, bytes]] | None:
    """``{"name": "text"}`` or ``[["name", "text"], …]`` → Kafka headers."""
    if value is None:
        return None
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not isinstance(pairs, list):
        raise ValueError("headers must be an object or a list of [name, value] pairs")
    headers = []
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ValueError("each header must be a [name, value] pair with a text name")
        headers.append((pair[0], _text_bytes(pair[1], f"header {pair[0]!r}")))
    return headers


def _entry(path: str, line: int, obj: Any) -> LogEntry:
    if not isinstance(obj, dict):
        return LogEntry(
            path, line, None, orjson.dumps(obj), None, Rejection("not_an_object", "log entry must be an object")
        )
    source = obj.get("source")
    payload = obj.get("payload")
    if isinstance(payload, str):
        raw = payload.encode()
    elif isinstance(payload, bytes):
        raw = payload
    else:
        raw = orjson.dumps(payload)
    if source not in REGISTRY:
        return LogEntry(
            path,
            line,
            None,
            raw,
            None,
            Rejection(
                "unrecognized_document", f"unknown source {source!r}; valid sources: {', '.join(sorted(REGISTRY))}"
            ),
        )
    if payload is None:
        return LogEntry(path, line, source, b"", None, Rejection("missing_id", "log entry has no payload"))
    try:
        moment = parse_timestamp(obj.get("timestamp"))
    except UnparseableTime as exc:
        return LogEntry(path, line, source, raw, None, Rejection("wrong_type", f"bad timestamp: {exc}"))
    try:
        key = None if obj.get("key") is None else _text_bytes(obj["key"], "key")
        headers = _log_headers(obj.get("headers"))
    except ValueError as exc:
        return LogEntry(path, line, source, raw, None, Rejection("wrong_type", f"log entry {exc}"))
    return LogEntry(path, line, source, raw, None if moment is None else to_millis(moment), key=key, headers=headers)


def read_log(path: Path) -> Iterator[LogEntry]:
    """Entries of one log file; Avro container files are detected by their magic bytes."""
    with open(path, "rb") as handle:
        if handle.read(4) == b"Obj\x01":
            handle.seek(0)
            for index, obj in enumerate(fastavro.reader(handle), start=1):
                yield _entry(str(path), index, obj)
            return
    with open(path, "rb") as handle:
        for index, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield LogEntry(
                    str(path),
                    index,
                    None,
                    line.rstrip(b"\n"),
                    None,
                    Rejection("malformed_json", f"line {index}: {exc}"),
                )
                continue
            yield _entry(str(path), index, obj)


def route(entry: LogEntry) -> tuple[bytes | None, bytes]:
    """(record key, what picks the raw partition) for a log entry.

    The partition follows the first EVSE the payload names (an OCPP charge point for OCPP,
    see :func:`streams.core.partition_key`), so one EVSE's reports share a raw partition and
    keep their log order whatever the partition count — also when the entry's own ``key`` is
    something else (an OCPI push path, a charge point id). The key is the entry's own, else
    that EVSE; an entry naming no EVSE goes unkeyed to the partition of its source's name.
    """
    assert entry.source is not None
    ctx = NormalizeContext(record_time=datetime(2100, 1, 1, tzinfo=UTC), key=entry.key, headers=entry.headers)
    with contextlib.suppress(Rejection):
        result = normalize_bytes(entry.source, entry.payload, ctx)
        if result.records:
            first = result.records[0]
            return (entry.key or first.evseUid.encode()), partition_key(first).encode()
    return entry.key, entry.source.encode()


@dataclass(slots=True)
class ReplayReport:
    published: int = 0
    dead_letters: int = 0
    acknowledged: int = 0  # records (raw and dead letters) the broker acknowledged so far
    dead_letters_by_kind: dict[str, int] = field(default_factory=dict)
    raw_end_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    max_timestamp: int | None = None


class PublishInterrupted(Exception):
    """Publishing was stopped (Ctrl-C); ``report`` says what reached the broker."""

    def __init__(self, report: ReplayReport, total: int) -> None:
        super().__init__(f"published {report.published} of {total} records")
        self.report = report
        self.total = total


async def publish(
    bootstrap: str | Kafka, paths: list[Path], partitions: int, speed: float | None = None, progress: bool = True
) -> ReplayReport:
    """Publish logs into the raw topics. ``speed`` None = as fast as possible; 1.0 = real time.

    The progress bar counts records the broker acknowledged, paced or not. Cancelled (Ctrl-C),
    it stops after acknowledging what it sent and raises :class:`PublishInterrupted`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    report = ReplayReport()
    entries = [entry for path in paths for entry in read_log(path)]
    first_ts = next((e.timestamp_ms for e in entries if e.timestamp_ms is not None), None)
    started = time.monotonic()
    async with producer_for(bootstrap) as producer:
        batcher = Batcher(producer, partitions)
        with Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not progress,
            transient=True,
        ) as bar:
            task = bar.add_task("replay", total=len(entries))
            pending = 0  # records handed to the batcher since the last acknowledgement

            async def acknowledge() -> None:
                nonlocal pending
                await _note_offsets(batcher, report)
                report.acknowledged += pending
                pending = 0
                bar.update(task, completed=report.acknowledged)

            try:
                for entry in entries:
                    timestamp = entry.timestamp_ms if entry.timestamp_ms is not None else int(time.time() * 1000)
                    if speed and first_ts is not None and entry.timestamp_ms is not None:
                        due = (entry.timestamp_ms - first_ts) / 1000 / speed
                        delay = due - (time.monotonic() - started)
                        if delay > 0:
                            await acknowledge()
                            await asyncio.sleep(delay)
                    if entry.error is not None:
                        report.dead_letters += 1
                        report.dead_letters_by_kind[entry.error.kind] = (
                            report.dead_letters_by_kind.get(entry.error.kind, 0) + 1
                        )
                        await batcher.add(
                            DLQ,
                            entry.path.encode(),
                            _replay_dead_letter(entry, timestamp),
                            timestamp,
                            headers=avro.schema_headers("DeadLetter"),
                        )
                    else:
                        report.published += 1
                        report.max_timestamp = max(report.max_timestamp or timestamp, timestamp)
                        key, by = route(entry)
                        await batcher.add(
                            RAW_TOPICS[entry.source],
                            key,
                            entry.payload,
                            timestamp,
                            partition=partition_for(by, partitions),
                            headers=entry.headers,
                        )
                    pending += 1
                    if pending >= 2000:
                        await acknowledge()
                await acknowledge()
            except asyncio.CancelledError:
                await acknowledge()
                report.published = report.acknowledged - report.dead_letters
                raise PublishInterrupted(report, len(entries)) from None
    return report


async def _note_offsets(batcher: Batcher, report: ReplayReport) -> None:
    for meta, count, _ in await batcher.flush():
        if meta.topic.startswith("raw."):
            slot = (meta.topic, meta.partition)
            report.raw_end_offsets[slot] = max(report.raw_end_offsets.get(slot, 0), meta.offset + count)


def _replay_dead_letter(entry: LogEntry, timestamp: int) -> bytes:
    assert entry.error is not None
    return avro.encode(
        "DeadLetter",
        {
            "source": entry.source,
            "topic": entry.path,
            "partition": 0,
            "offset": entry.line,
            "timestamp": timestamp,
            "key": entry.key,
            "payload": entry.payload,
            "errorKind": entry.error.kind,
            "errorMessage": entry.error.message,
            "path": None,
            "stage": "replay",
        },
    )


log_unreadable = logging.getLogger("plugstream.runner")


def _decoded(name: str, message: Any, unreadable: dict[str, int]) -> dict[str, Any] | None:
    """A record read back from an output topic, or ``None`` (counted, logged) when it cannot
    be decoded — a misconfigured producer's bytes never stop a downstream read."""
    try:
        return avro.decode_resolved(name, message.value or b"", message.headers)
    except Exception as exc:
        unreadable[message.topic] = unreadable.get(message.topic, 0) + 1
        if unreadable[message.topic] <= 3:
            log_unreadable.warning(
                "skipping an unreadable record on %s partition %d offset %d: %s: %s",
                message.topic,
                message.partition,
                message.offset,
                type(exc).__name__,
                exc,
            )
        return None


async def read_windows(bootstrap: str | Kafka, unreadable: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Closed windows from ``evse-availability-windowed``; a redelivered window counts once."""
    skipped = {} if unreadable is None else unreadable
    latest: dict[tuple[str, Any], dict[str, Any]] = {}
    for messages in (await read_to_end(bootstrap, EVSE_AVAILABILITY_WINDOWED)).values():
        for message in messages:
            decoded = _decoded("EvseAvailabilityWindow", message, skipped)
            if decoded is not None:
                window = avro.to_jsonable(decoded)
                latest[(window["evseUid"], window["windowStart"])] = window
    return [latest[key] for key in sorted(latest)]


DEFAULT_STALENESS_MS = int(Settings.model_fields["staleness_seconds"].default * 1000)


async def snapshot(bootstrap: str | Kafka, staleness_ms: int = DEFAULT_STALENESS_MS) -> dict[str, Any]:
    """Rebuild the ``evses`` view from the compacted ``evse-availability`` topic, as any
    downstream consumer would: latest record per EVSE, staleness re-evaluated against the
    newest stream time found on the topic. Undecodable records are skipped and counted
    (``"unreadable": {topic: n}``, present only when some were)."""
    unreadable: dict[str, int] = {}
    latest: dict[str, tuple[int, dict[str, Any]]] = {}
    for messages in (await read_to_end(bootstrap, EVSE_AVAILABILITY)).values():
        for message in messages:
            view = _decoded("EvseAvailability", message, unreadable)
            if view is not None:
                latest[view["evseUid"]] = (message.offset, view)
    stream_times = [to_millis(v["streamTime"]) for _, v in latest.values() if v["streamTime"] is not None]
    stream_time = max(stream_times) if stream_times else None
    evses = []
    for uid in sorted(latest):
        view = latest[uid][1]
        last_seen = None if view["lastSeenTimestamp"] is None else to_millis(view["lastSeenTimestamp"])
        view["streamTime"] = None if stream_time is None else stream_time
        view["stale"] = is_stale(last_seen, stream_time, staleness_ms)
        evses.append(avro.as_published("EvseAvailability", view))
    result: dict[str, Any] = {"evses": evses}
    if unreadable:
        result["unreadable"] = unreadable
    return result


def with_replay_dead_letters(stats: dict[str, Any], report: ReplayReport) -> dict[str, Any]:
    """The pipeline's counters plus the log lines replay itself dead-lettered, so ``rejected``
    equals the records on ``plugstream.dlq`` and the sum of ``rejectedByKind``."""
    by_kind = dict(stats["rejectedByKind"])
    for kind, n in report.dead_letters_by_kind.items():
        by_kind[kind] = by_kind.get(kind, 0) + n
    return {**stats, "rejected": stats["rejected"] + report.dead_letters, "rejectedByKind": by_kind}


async def embedded_dump(paths: list[Path], settings: Settings, progress: bool = True) -> dict[str, Any]:
    """Run the whole pipeline on a fresh embedded broker until every record is processed."""
    from .broker import EmbeddedBroker
    from .engines import create_engine

    with EmbeddedBroker() as broker:
        pipeline = create_engine(settings, broker.bootstrap)
        await pipeline.start()
        try:
            report = await publish(broker.bootstrap, paths, settings.partitions, progress=progress)
            await pipeline.wait_processed(report.raw_end_offsets)
            return {
                "evses": pipeline.evses(),
                "windows": await read_windows(broker.bootstrap),
                "stats": with_replay_dead_letters(pipeline.stats(), report),
            }
        finally:
            await pipeline.stop()
