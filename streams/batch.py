"""``plugstream normalize``'s engine: a file of raw documents → canonical records as JSON Lines.

JSON Lines are read as they are normalized, so memory stays flat whatever the file's size
(one document, or a JSON array, is parsed whole). No Kafka and no state: each document is
normalized alone, so a big input is split into contiguous slices normalized by forked
processes — a regular file by byte ranges each process reads itself, an in-memory array by
index ranges. The parent normalizes the first slice; each child writes its slice's records
and rejections to unlinked temporary files the parent then copies out in input order (a
rejection's ``index`` is rebased to its place in the whole input). The output is byte for byte
what one process writes; only the wall time differs. A child that fails has its slice redone
by the parent. Where ``os.fork`` does not exist (Windows), the input is small or a stream
(stdin from a pipe), one process does it all.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
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
READ_CHUNK = 1 << 20
#: lines written at a time; small on purpose: each ``orjson.dumps`` result holds a 16 KiB
#: buffer whatever its length, so 4,096 pending lines meant 64 MiB and a page fault storm
WRITE_BATCH = 256
_BOM = b"\xef\xbb\xbf"


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

    def write(self, fields: dict[str, Any]) -> None:
        """Write one record's field dict (the command's own: its two times are replaced by text)."""
        fields["eventTime"] = self._time(fields["eventTime"])
        fields["recordTime"] = self._time(fields["recordTime"])
        self._lines.append(orjson.dumps(fields))
        if len(self._lines) >= WRITE_BATCH:
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

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TALLY_COUNTS, 0))
    warnings: dict[str, int] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        for name, n in other.warnings.items():
            self.warnings[name] = self.warnings.get(name, 0) + n


@dataclass(frozen=True)
class Documents:
    """Documents in memory: parsed already, or (``lines``) raw JSON Lines still to decode;
    ``size`` is the input's length in bytes."""

    items: Sequence[Any]
    lines: bool
    size: int = 0


@dataclass(frozen=True)
class Lines:
    """JSON Lines read while they are normalized: from a regular file by offset (``fd`` from
    ``start`` to ``size``, so that several processes can read slices of it), or from a stream
    (``stream``, one process)."""

    fd: int | None = None
    start: int = 0
    size: int = 0
    stream: Iterable[bytes] | None = None


Input = Documents | Lines


def split_documents(raw: bytes, max_bytes: int) -> Documents:
    """One JSON document, a JSON array of documents, or JSON Lines → documents.

    A whole file that parses is one document (or the elements of a top-level array, unless
    it is one OCPP-J frame); otherwise it is read as JSON Lines, each line a document that
    may be rejected alone.
    """
    stripped, size = raw.lstrip(_BOM).strip(), len(raw)
    if not stripped:
        return Documents([], False, size)
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        pass
    else:
        if isinstance(whole, list) and not (whole and whole[0].__class__ is int):
            return Documents(whole, False, size)
        return Documents([whole], False, size)  # one document (an OCPP-J frame [2, id, action, payload] is one too)
    lines = [line for line in stripped.split(b"\n") if line.strip()]
    first = lines[0].strip()
    if (len(lines) > 1 and first in (b"{", b"[")) or first.endswith((b"{", b"[", b",")):
        # a pretty-printed document that does not parse: one rejection, not one per line
        try:
            decode_payload(stripped, max_bytes=max(len(stripped), max_bytes))
        except Rejection as rejection:
            return Documents([rejection], False, size)
    return Documents(lines, True, size)


def _parses(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def read_input(file: BinaryIO, max_bytes: int) -> Input:
    """The input's shape, decided by its first line: when that line is a JSON value of its
    own and more follows, the input is JSON Lines (no single JSON document can hold a value
    followed by more), read as it is normalized. Anything else is read whole and split by
    :func:`split_documents`, exactly as before streaming existed."""
    try:
        fd = file.fileno()
        status = os.fstat(fd)
        regular = stat.S_ISREG(status.st_mode)
        start = file.tell()
    except (AttributeError, OSError, ValueError):
        regular = False
    if regular:
        size = status.st_size
        lines = _pread_lines(fd, start, size)
        first = next((line for line in lines if line.strip()), None)
        if (
            first is not None
            and _parses(first.lstrip(_BOM).strip())
            and next((True for line in lines if line.strip()), False)
        ):
            return Lines(fd=fd, start=start, size=size)
        return split_documents(file.read(), max_bytes)
    seen: list[bytes] = []
    stream = iter(file)
    for line in stream:
        seen.append(line)
        if line.strip():
            break
    if seen and _parses(seen[-1].lstrip(_BOM).strip()):
        for line in stream:
            seen.append(line)
            if line.strip():
                return Lines(stream=_chain(seen, stream))
    return split_documents(b"".join(seen) + file.read(), max_bytes)


def _chain(first: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from first
    yield from rest


def _pread_lines(fd: int, start: int, end: int) -> Iterator[bytes]:
    """The lines of ``fd`` that start at offsets in [``start``, ``end``); ``start`` must be a
    line start. Read with ``os.pread``, so processes sharing the descriptor do not disturb one
    another's position."""
    position = line_start = start
    pending = b""
    while line_start < end:
        data = os.pread(fd, READ_CHUNK, position)
        if not data:
            if pending:
                yield pending
            return
        position += len(data)
        parts = (pending + data).split(b"\n") if pending else data.split(b"\n")
        pending = parts.pop()
        for part in parts:
            if line_start >= end:
                return
            yield part
            line_start += len(part) + 1


def _without_bom(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of an input from its start, a UTF-8 byte order mark dropped from the first."""
    iterator = iter(lines)
    for line in iterator:
        yield line.lstrip(_BOM)
        break
    yield from iterator


def _line_start_from(fd: int, offset: int, start: int) -> int:
    """The first line start at or after ``offset`` (``start`` is the input's first)."""
    if offset <= start:
        return start
    position = offset - 1
    while True:
        data = os.pread(fd, 65_536, position)
        if not data:
            return position
        newline = data.find(b"\n")
        if newline >= 0:
            return position + newline + 1
        position += len(data)


RejectionSink = Callable[[int, dict[str, str]], None]


def rejections_to(stream: BinaryIO, base: int = 0) -> RejectionSink:
    """A sink writing each rejection as a JSON line, its ``index`` shifted by ``base`` (the
    documents before the slice)."""

    def write(index: int, rejection: dict[str, str]) -> None:
        write_jsonl(stream, {"index": base + index, **rejection})

    return write


def _fields(values: dict[str, Any]) -> dict[str, Any]:
    """The command writes each record's field dict as it is: no pydantic model in between
    (nor its import, see ``streams/vocabulary.py``)."""
    return values


def normalize_items(job: Job, items: Iterable[Any], lines: bool, out: BinaryIO, rejected: RejectionSink) -> Tally:
    """Normalize documents (raw lines when ``lines``, blank ones skipped): records to ``out``;
    each rejection to ``rejected(index, rejection)``, ``index`` counting from 0 here."""
    tally = Tally()
    counts, warnings = tally.counts, tally.warnings
    writer = RecordWriter(out)
    index = -1
    for item in items:
        rejection: Rejection | None = None
        document: Any = None
        if lines:
            text = item.strip()
            if not text:
                continue
            try:
                document = decode_payload(text, job.max_bytes)
            except Rejection as exc:
                rejection = exc
        elif isinstance(item, Rejection):
            rejection = item
        else:
            document = item
        index += 1
        counts["documents"] += 1
        ctx = NormalizeContext(
            record_time=job.record_time,
            max_skew=job.max_skew,
            key=job.key,
            headers=job.headers,
            max_connectors=job.max_connectors,
            build_record=_fields,
        )
        if rejection is None:
            try:
                result = normalize_document(job.source, document, ctx)
            except Rejection as exc:
                rejection = exc
        if rejection is not None:
            counts["rejected"] += 1
            rejected(index, rejection.as_dict())
            continue
        for record in result.records:
            writer.write(record)
        for partial in result.rejections:
            counts["rejected"] += 1
            rejected(index, partial.as_dict())
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


def worker_count(requested: int | None, source: Input, size: int | None = None) -> int:
    """How many processes: ``requested`` (``--workers``), else one per CPU (at most 8) for an
    input of :data:`PARALLEL_MIN_BYTES` or more (and :data:`PARALLEL_MIN_DOCUMENTS` when it is
    in memory). A stream is always read by one process."""
    if not hasattr(os, "fork") or (isinstance(source, Lines) and source.fd is None):
        return 1
    if requested is not None:
        return max(1, requested)
    if size is None:
        size = source.size - source.start if isinstance(source, Lines) else source.size
    if size < PARALLEL_MIN_BYTES:
        return 1
    if isinstance(source, Documents) and len(source.items) < PARALLEL_MIN_DOCUMENTS:
        return 1
    return min(available_cpus(), 8)


def slice_bounds(documents: Documents, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous index ranges of about equal work (bytes for lines, else counts)."""
    n = len(documents.items)
    parts = max(1, min(parts, n))
    if n == 0:
        return [(0, 0)]
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


def _slices(source: Input, parts: int) -> list[tuple[Callable[[], Iterable[Any]], bool]]:
    """The input as ``parts`` (or fewer) slices in order: (a function giving the slice's
    items, whether they are raw lines)."""
    if isinstance(source, Lines):
        if source.fd is None:
            stream = source.stream or ()
            return [(lambda: _without_bom(stream), True)]
        fd, start, size = source.fd, source.start, source.size
        cuts = sorted({_line_start_from(fd, start + (size - start) * k // parts, start) for k in range(parts)})
        ends = [*cuts[1:], size]
        return [
            (lambda a=a, b=b: _pread_lines(fd, a, b) if a > start else _without_bom(_pread_lines(fd, a, b)), True)  # type: ignore[misc]
            for a, b in zip(cuts, ends, strict=True)
            if a < b
        ]
    items = source.items
    return [(lambda a=a, b=b: items[a:b], source.lines) for a, b in slice_bounds(source, parts)]  # type: ignore[misc]


def normalize_input(job: Job, source: Input, out: BinaryIO, err: BinaryIO, workers: int = 1) -> Tally:
    """Every document of ``source``, on ``workers`` processes; output in input order either way."""
    slices = _slices(source, workers)
    if len(slices) == 1:
        items, lines = slices[0]
        return normalize_items(job, items(), lines, out, rejections_to(err))
    gc.freeze()  # what is parsed already is shared with the children copy-on-write: keep GC off it
    try:
        return _normalize_forked(job, slices, out, err)
    finally:
        gc.unfreeze()


class _ChildSlice:
    """A forked child's slice: its records and rejections go to unlinked temporary files, its
    tally through a pipe at the end (empty if the child died)."""

    def __init__(self, job: Job, items: Callable[[], Iterable[Any]], lines: bool) -> None:
        self.items, self.lines = items, lines
        self.records = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.rejections = tempfile.TemporaryFile()  # noqa: SIM115
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read_end)
            self._run(job, write_end)
        os.close(write_end)
        self._pipe = read_end

    def _run(self, job: Job, pipe: int) -> None:
        status = 1
        try:
            with (
                open(self.records.fileno(), "wb", closefd=False) as records,
                open(self.rejections.fileno(), "wb", closefd=False) as rejections,
            ):
                tally = normalize_items(job, self.items(), self.lines, records, rejections_to(rejections))
            os.write(pipe, orjson.dumps({"counts": tally.counts, "warnings": tally.warnings}))
            status = 0
        finally:
            os._exit(status)

    def result(self) -> Tally | None:
        """The child's tally once it exited; ``None`` if it failed."""
        with open(self._pipe, "rb", closefd=True) as pipe:
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        if status != 0 or not data:
            return None
        head = orjson.loads(data)
        return Tally(head["counts"], head["warnings"])

    def copy_out(self, out: BinaryIO, err: BinaryIO, base: int) -> None:
        _copy_file(self.records, out)
        self.rejections.seek(0)
        for line in self.rejections:
            rejection = orjson.loads(line)
            rejection["index"] += base
            write_jsonl(err, rejection)

    def close(self) -> None:
        self.records.close()
        self.rejections.close()


def _copy_file(source: BinaryIO, out: BinaryIO) -> None:
    """All of ``source`` appended to ``out``: in the kernel (``os.sendfile``) when ``out`` is
    a real file or pipe, the rest through Python (a ``BytesIO`` in tests, or a target
    ``sendfile`` refuses)."""
    source.flush()
    offset = 0
    target = _fileno(out)
    if target is not None and hasattr(os, "sendfile"):
        out.flush()
        size = os.fstat(source.fileno()).st_size
        with contextlib.suppress(OSError):  # what failed is retried below, from where it stopped
            while offset < size and (sent := os.sendfile(target, source.fileno(), offset, size - offset)):
                offset += sent
        if offset == size:
            return
    source.seek(offset)
    shutil.copyfileobj(source, out, READ_CHUNK)  # type: ignore[misc]


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _normalize_forked(
    job: Job, slices: list[tuple[Callable[[], Iterable[Any]], bool]], out: BinaryIO, err: BinaryIO
) -> Tally:
    children = [_ChildSlice(job, items, lines) for items, lines in slices[1:]]
    try:
        items, lines = slices[0]
        total = normalize_items(job, items(), lines, out, rejections_to(err))
        for child in children:
            base = total.counts["documents"]
            tally = child.result()
            if tally is None:  # redo what the child lost
                tally = normalize_items(job, child.items(), child.lines, out, rejections_to(err, base))
            else:
                child.copy_out(out, err, base)
            total.add(tally)
    finally:
        for child in children:
            child.close()
    out.flush()
    return total
