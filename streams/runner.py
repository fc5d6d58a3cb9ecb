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
from .engine import AggregateStage, Batcher, NormalizeStage, partition_for, producer_for
from .kafka import Kafka
from .timeparse import UnparseableTime, parse_timestamp, to_millis
from .topics import (
    DLQ,
    EVSE_AVAILABILITY,
    EVSE_AVAILABILITY_WINDOWED,
    RAW_TOPICS,
    ensure_topics,
    read_to_end,
    topic_specs,
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
    raw_end_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    max_timestamp: int | None = None


async def publish(
    bootstrap: str | Kafka, paths: list[Path], partitions: int, speed: float | None = None, progress: bool = True
) -> ReplayReport:
    """Publish logs into the raw topics. ``speed`` None = as fast as possible; 1.0 = real time."""
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
            for index, entry in enumerate(entries):
                timestamp = entry.timestamp_ms if entry.timestamp_ms is not None else int(time.time() * 1000)
                if speed and first_ts is not None and entry.timestamp_ms is not None:
                    due = (entry.timestamp_ms - first_ts) / 1000 / speed
                    delay = due - (time.monotonic() - started)
                    if delay > 0:
                        await batcher.flush()
                        await asyncio.sleep(delay)
                if entry.error is not None:
                    report.dead_letters += 1
                    await batcher.add(DLQ, entry.path.encode(), _replay_dead_letter(entry, timestamp), timestamp)
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
                if index % 2000 == 1999:
                    await _note_offsets(batcher, report)
                    bar.update(task, completed=index + 1)
            await _note_offsets(batcher, report)
            bar.update(task, completed=len(entries))
    return report


async def _note_offsets(batcher: Batcher, report: ReplayReport) -> None:
    for meta, count in await batcher.flush():
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


# --- the whole pipeline in one process ------------------------------------------------------


@dataclass
class LocalPipeline:
    """Both stages in this process against one broker (the embedded default or any Kafka)."""

    settings: Settings
    bootstrap: str | Kafka
    group: bool = False
    normalize: NormalizeStage = field(init=False)
    aggregate: AggregateStage = field(init=False)
    produced: dict[int, int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _producer_cm: Any = None

    def __post_init__(self) -> None:
        self.normalize = NormalizeStage(self.settings, self.bootstrap, self.group, on_produced=self._produced)
        self.aggregate = AggregateStage(self.settings, self.bootstrap, self.group)

    def _produced(self, partition: int, offset: int) -> None:
        self.produced[partition] = max(self.produced.get(partition, -1), offset)

    async def start(self) -> None:
        await ensure_topics(
            self.bootstrap,
            topic_specs(self.settings.app_id, int(self.settings.window_retention_seconds * 1000)),
            self.settings.partitions,
            self.settings.replication_factor,
        )
        self._producer_cm = producer_for(self.bootstrap)
        producer = await self._producer_cm.__aenter__()
        ready = [asyncio.Event(), asyncio.Event()]
        self.tasks = [
            asyncio.create_task(self.normalize.run(producer, ready[0]), name="normalize"),
            asyncio.create_task(self.aggregate.run(producer, ready[1]), name="aggregate"),
        ]
        waiter = asyncio.gather(ready[0].wait(), ready[1].wait())
        done, _ = await asyncio.wait([*self.tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
        for task in self.tasks:
            if task in done:
                task.result()  # a stage failed while starting: raise it here

    async def wait_processed(self, raw_end_offsets: dict[tuple[str, int], int], timeout: float = 300) -> None:
        """Until every published raw record and every record it produced has been processed."""
        from aiokafka import TopicPartition

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_failed()
            stage1_done = all(
                self.normalize.positions.get(TopicPartition(t, p), 0) >= end for (t, p), end in raw_end_offsets.items()
            )
            if stage1_done:
                offsets = self.aggregate.processed_offsets()
                if all(offsets.get(p, -1) >= last for p, last in self.produced.items()):
                    return
            await asyncio.sleep(0.02)
        raise TimeoutError("pipeline did not finish processing in time")

    def _raise_if_failed(self) -> None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        self.normalize.stop()
        self.aggregate.stop()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        if self._producer_cm is not None:
            await self._producer_cm.__aexit__(None, None, None)

    def lag(self) -> dict[str, int]:
        return {"normalize": self.normalize.lag(), "aggregate": self.aggregate.lag()}

    def stats(self) -> dict[str, Any]:
        counters = self.aggregate.counters()
        s1 = self.normalize.stats
        return {
            "accepted": counters["accepted"],
            "duplicates": counters["duplicates"],
            "stale": counters["stale"],
            "skipped": s1.skipped,
            "rejected": s1.rejected + counters.get("rejected", 0),
            "late": counters["late"],
            "removedBySnapshot": counters["removedBySnapshot"],
            "evseScopeUnmatched": counters["evseScopeUnmatched"],
            "rawRecords": s1.rawRecords,
            "statusRecords": s1.statusRecords,
            "skippedByReason": s1.skippedByReason,
            "rejectedByKind": _with_stage2_rejections(s1.rejectedByKind, counters.get("rejected", 0)),
            "warnings": s1.warnings,
        }

    def evses(self) -> list[dict[str, Any]]:
        """Final per-EVSE table, staleness against the newest record timestamp processed anywhere."""
        from .core import availability

        stream_time = self.aggregate.stream_time()
        views = [
            availability(evse, stream_time, self.aggregate.policy)
            for state in self.aggregate.states.values()
            for evse in state.store.values()
        ]
        return sorted((_as_published("EvseAvailability", v) for v in views), key=lambda v: v["evseUid"])


def _with_stage2_rejections(by_kind: dict[str, int], stage2: int) -> dict[str, int]:
    """Stage 2 rejects only ``connector-status`` records that are not Avro (``malformed_avro``)."""
    if not stage2:
        return by_kind
    return {**by_kind, "malformed_avro": by_kind.get("malformed_avro", 0) + stage2}


def _as_published(schema: str, value: dict[str, Any]) -> dict[str, Any]:
    """What a consumer of the topic sees: Avro round trip, then JSON-friendly values."""
    return avro.to_jsonable(avro.decode(schema, avro.encode(schema, value)))


async def read_windows(bootstrap: str | Kafka) -> list[dict[str, Any]]:
    """Closed windows from ``evse-availability-windowed``; a redelivered window counts once."""
    latest: dict[tuple[str, Any], dict[str, Any]] = {}
    for messages in (await read_to_end(bootstrap, EVSE_AVAILABILITY_WINDOWED)).values():
        for message in messages:
            window = avro.to_jsonable(avro.decode("EvseAvailabilityWindow", message.value))
            latest[(window["evseUid"], window["windowStart"])] = window
    return [latest[key] for key in sorted(latest)]


DEFAULT_STALENESS_MS = int(Settings.model_fields["staleness_seconds"].default * 1000)


async def snapshot(bootstrap: str | Kafka, staleness_ms: int = DEFAULT_STALENESS_MS) -> dict[str, Any]:
    """Rebuild the ``evses`` view from the compacted ``evse-availability`` topic, as any
    downstream consumer would: latest record per EVSE, staleness re-evaluated against the
    newest stream time found on the topic."""
    latest: dict[str, tuple[int, dict[str, Any]]] = {}
    for messages in (await read_to_end(bootstrap, EVSE_AVAILABILITY)).values():
        for message in messages:
            view = avro.decode("EvseAvailability", message.value)
            latest[view["evseUid"]] = (message.offset, view)
    stream_times = [to_millis(v["streamTime"]) for _, v in latest.values() if v["streamTime"] is not None]
    stream_time = max(stream_times) if stream_times else None
    evses = []
    for uid in sorted(latest):
        view = latest[uid][1]
        last_seen = None if view["lastSeenTimestamp"] is None else to_millis(view["lastSeenTimestamp"])
        view["streamTime"] = None if stream_time is None else stream_time
        view["stale"] = is_stale(last_seen, stream_time, staleness_ms)
        evses.append(_as_published("EvseAvailability", view))
    return {"evses": evses}


async def embedded_dump(paths: list[Path], settings: Settings, progress: bool = True) -> dict[str, Any]:
    """Run the whole pipeline on a fresh embedded broker until every record is processed."""
    from .broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        pipeline = LocalPipeline(settings, broker.bootstrap)
        await pipeline.start()
        try:
            report = await publish(broker.bootstrap, paths, settings.partitions, progress=progress)
            await pipeline.wait_processed(report.raw_end_offsets)
            stats = pipeline.stats()
            stats["rejected"] += report.dead_letters
            return {"evses": pipeline.evses(), "windows": await read_windows(broker.bootstrap), "stats": stats}
        finally:
            await pipeline.stop()
