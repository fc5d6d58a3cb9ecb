"""``plugstream normalize``'s engine: a file of raw documents → canonical records as JSON Lines.

No Kafka and no state: each document is normalized alone, so a big input is split into
contiguous slices normalized by forked processes (the parent takes the first slice; each
child sends its slice's output back through a pipe), and the parent writes the slices in
input order. The output is byte for byte what one process writes; only the wall time differs.
Where ``os.fork`` does not exist (Windows) or the input is small, one process does it all.
A child that fails has its slice redone by the parent, so nothing is lost to a worker.
"""

from __future__ import annotations

import gc
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO

import orjson

from .adapters import NormalizeContext, Rejection, normalize_document
from .adapters.base import decode_payload
from .timeparse import rfc3339

#: below this many documents or bytes one process is quicker than forking
PARALLEL_MIN_DOCUMENTS = 1_000
PARALLEL_MIN_BYTES = 1 << 20
TALLY_COUNTS = ("documents", "records", "rejected", "skipped")
_FRAME = struct.Struct("!QQQ")  # the lengths of a child's tally, records and rejections


class RecordWriter:
    """Canonical records → JSON Lines, fast: orjson writes the enums itself, and the two
    timestamps are formatted once per distinct value (``2026-03-01T09:29:00.000Z``; orjson's
    own datetime form drops the milliseconds when they are zero)."""

    __slots__ = ("_lines", "_stream", "_times")

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._times: dict[datetime, str] = {}
        self._lines: list[bytes] = []

    def _time(self, moment: datetime) -> str:
        text = self._times.get(moment)
        if text is None:
            if len(self._times) > 100_000:
                self._times.clear()
            text = self._times[moment] = rfc3339(moment)
        return text

    def write(self, record: Any) -> None:
        fields = record.__dict__.copy()
        fields["eventTime"] = self._time(fields["eventTime"])
        fields["recordTime"] = self._time(fields["recordTime"])
        self._lines.append(orjson.dumps(fields))
        if len(self._lines) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._lines.append(b"")
            self._stream.write(b"\n".join(self._lines))
            self._lines.clear()
        self._stream.flush()


def write_jsonl(stream: BinaryIO, obj: dict[str, Any]) -> None:
    stream.write(orjson.dumps(obj) + b"\n")


@dataclass(frozen=True)
class Job:
    """What every slice is normalized with (the command's options)."""

    source: str
    record_time: datetime
    max_skew: timedelta
    max_bytes: int
    max_connectors: int
    key: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class Tally:
    """The ``--stats`` summary of a slice (or of the whole input)."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("documents", "records", "rejected", "skipped"), 0)
    )
    warnings: dict[str, int] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        for name, n in other.warnings.items():
            self.warnings[name] = self.warnings.get(name, 0) + n


@dataclass(frozen=True)
class Documents:
    """The input split into documents: parsed already, or (``lines``) raw JSON Lines each slice
    decodes itself, so that parsing is spread over the processes too."""

    items: Sequence[Any]
    lines: bool


def split_documents(raw: bytes, max_bytes: int) -> Documents:
    """One JSON document, a JSON array of documents, or JSON Lines → documents.

    A whole file that parses is one document (or the elements of a top-level array, unless
    it is one OCPP-J frame); otherwise it is read as JSON Lines, each line a document that
    may be rejected alone.
    """
    stripped = raw.lstrip(b"\xef\xbb\xbf").strip()
    if not stripped:
        return Documents([], False)
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        pass
    else:
        if isinstance(whole, list) and not (whole and whole[0].__class__ is int):
            return Documents(whole, False)
        return Documents([whole], False)  # one document (an OCPP-J frame [2, id, action, payload] is one too)
    lines = [line for line in stripped.split(b"\n") if line.strip()]
    first = lines[0].strip()
    if (len(lines) > 1 and first in (b"{", b"[")) or first.endswith((b"{", b"[", b",")):
        # a pretty-printed document that does not parse: one rejection, not one per line
        try:
            decode_payload(stripped, max_bytes=max(len(stripped), max_bytes))
        except Rejection as rejection:
            return Documents([rejection], False)
    return Documents(lines, True)


def normalize_slice(job: Job, documents: Documents, start: int, stop: int, out: BinaryIO, err: BinaryIO) -> Tally:
    """Documents ``start``…``stop - 1``: records to ``out``, one JSON line per rejection to ``err``
    (``index`` is the document's place in the whole input)."""
    tally = Tally()
    counts, warnings = tally.counts, tally.warnings
    writer = RecordWriter(out)
    items, lines = documents.items, documents.lines
    for index in range(start, stop):
        item = items[index]
        counts["documents"] += 1
        rejection: Rejection | None = None
        document: Any = None
        if lines:
            try:
                document = decode_payload(item.strip(), job.max_bytes)
            except Rejection as exc:
                rejection = exc
        elif isinstance(item, Rejection):
            rejection = item
        else:
            document = item
        ctx = NormalizeContext(
            record_time=job.record_time,
            max_skew=job.max_skew,
            key=job.key,
            headers=job.headers,
            max_connectors=job.max_connectors,
        )
        if rejection is None:
            try:
                result = normalize_document(job.source, document, ctx)
            except Rejection as exc:
                rejection = exc
        if rejection is not None:
            counts["rejected"] += 1
            write_jsonl(err, {"index": index, **rejection.as_dict()})
            continue
        for record in result.records:
            writer.write(record)
        for partial in result.rejections:
            counts["rejected"] += 1
            write_jsonl(err, {"index": index, **partial.as_dict()})
        counts["records"] += len(result.records)
        counts["skipped"] += sum(result.skipped.values())
        for name, n in ctx.warnings.counts.items():
            warnings[name] = warnings.get(name, 0) + n
    writer.flush()
    return tally


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def slice_bounds(documents: Documents, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous slices of about equal work (bytes for JSON Lines, else counts)."""
    n = len(documents.items)
    parts = max(1, min(parts, n))
    if documents.lines:
        total = sum(len(line) for line in documents.items)
        bounds, start, seen, part = [], 0, 0, 1
        for index, line in enumerate(documents.items):
            seen += len(line)
            if part < parts and seen >= total * part / parts:
                bounds.append((start, index + 1))
                start, part = index + 1, part + 1
        bounds.append((start, n))
        return [b for b in bounds if b[0] < b[1]] or [(0, n)]
    step = -(-n // parts)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def worker_count(requested: int | None, documents: Documents, size: int) -> int:
    """How many processes: ``requested`` (``--workers``), else one per CPU for a big input."""
    if not hasattr(os, "fork"):
        return 1
    if requested is not None:
        return max(1, requested)
    if len(documents.items) < PARALLEL_MIN_DOCUMENTS or size < PARALLEL_MIN_BYTES:
        return 1
    return min(available_cpus(), 8)


class _Chunks:
    """A write-only stream that keeps what is written as a list of chunks (no copying into one
    growing buffer, which costs a child a tenth of its time on a big slice)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _child(job: Job, documents: Documents, bounds: tuple[int, int], pipe: int) -> None:
    """In a forked child: normalize one slice, send tally + records + rejections, exit."""
    status = 1
    try:
        out, err = _Chunks(), _Chunks()
        tally = normalize_slice(job, documents, *bounds, out, err)  # type: ignore[arg-type]
        head = orjson.dumps({"counts": tally.counts, "warnings": tally.warnings})
        with open(pipe, "wb", closefd=True) as stream:
            stream.write(_FRAME.pack(len(head), out.size, err.size) + head)
            stream.writelines(out.chunks)
            stream.writelines(err.chunks)
        status = 0
    finally:
        os._exit(status)


def _collect(pipe: int) -> tuple[Tally, bytes, bytes] | None:
    """A child's slice from its pipe; ``None`` if it died before sending all of it."""
    with open(pipe, "rb", closefd=True) as stream:
        data = stream.read()
    if len(data) < _FRAME.size:
        return None
    head_len, body_len, err_len = _FRAME.unpack_from(data)
    if len(data) != _FRAME.size + head_len + body_len + err_len:
        return None
    at = _FRAME.size
    head = orjson.loads(data[at : at + head_len])
    at += head_len
    body = data[at : at + body_len]
    return Tally(head["counts"], head["warnings"]), body, data[at + body_len :]


def normalize_documents(job: Job, documents: Documents, out: BinaryIO, err: BinaryIO, workers: int = 1) -> Tally:
    """Every document, on ``workers`` processes; output in input order either way."""
    n = len(documents.items)
    if workers <= 1 or n < 2:
        return normalize_slice(job, documents, 0, n, out, err)
    bounds = slice_bounds(documents, workers)
    gc.freeze()  # the parsed input is shared with the children copy-on-write; keep GC off it
    try:
        return _normalize_forked(job, documents, bounds, out, err)
    finally:
        gc.unfreeze()


def _normalize_forked(
    job: Job, documents: Documents, bounds: list[tuple[int, int]], out: BinaryIO, err: BinaryIO
) -> Tally:
    children: list[tuple[int, int, tuple[int, int]]] = []
    for part in bounds[1:]:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read_end)
            _child(job, documents, part, write_end)
        os.close(write_end)
        children.append((pid, read_end, part))
    total = normalize_slice(job, documents, *bounds[0], out, err)
    for pid, read_end, part in children:
        collected = _collect(read_end)
        _, status = os.waitpid(pid, 0)
        if collected is None or status != 0:
            total.add(normalize_slice(job, documents, *part, out, err))  # redo what the child lost
            continue
        tally, body, errors = collected
        out.write(body)
        err.write(errors)
        total.add(tally)
    out.flush()
    return total
