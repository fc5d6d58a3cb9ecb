"""The ``plugstream`` command line.

Each subcommand reads settings at its own entry point; importing this module does nothing.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any, BinaryIO

import click
import orjson

from .adapters import REGISTRY, NormalizeContext, Rejection, normalize_document
from .adapters.base import DEFAULT_MAX_PAYLOAD_BYTES, decode_payload
from .avro import to_jsonable
from .timeparse import UnparseableTime, parse_timestamp


class SourceChoice(click.ParamType):
    """A source name; the error lists the valid ones (the adapter registry's names)."""

    name = "source"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value in REGISTRY:
            return value
        self.fail(f"unknown source {value!r}; valid sources: {', '.join(sorted(REGISTRY))}", param, ctx)


def _record_time(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)  # the edge, not processing
    try:
        moment = parse_timestamp(int(value) if value.isdigit() else value)
    except UnparseableTime as exc:
        raise click.BadParameter(str(exc)) from None
    if moment is None:
        raise click.BadParameter("empty record time")
    return moment


def split_documents(raw: bytes, max_bytes: int) -> list[tuple[Any, Rejection | None]]:
    """One JSON document, a JSON array of documents, or JSON Lines → documents.

    A whole file that parses is one document (or the elements of a top-level array);
    otherwise it is read as JSON Lines, each line a document that may be rejected alone.
    """
    stripped = raw.lstrip(b"\xef\xbb\xbf").strip()
    if not stripped:
        return []
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        pass
    else:
        return [(doc, None) for doc in whole] if isinstance(whole, list) else [(whole, None)]
    lines = [line for line in stripped.split(b"\n") if line.strip()]
    first = lines[0].strip()
    if (len(lines) > 1 and first in (b"{", b"[")) or first.endswith((b"{", b"[", b",")):
        # a pretty-printed document that does not parse: one rejection, not one per line
        try:
            decode_payload(stripped, max_bytes=max(len(stripped), max_bytes))
        except Rejection as rejection:
            return [(None, rejection)]
    documents: list[tuple[Any, Rejection | None]] = []
    for line in lines:
        try:
            documents.append((decode_payload(line.strip(), max_bytes), None))
        except Rejection as rejection:
            documents.append((None, rejection))
    return documents


def _write_jsonl(stream: BinaryIO, obj: dict[str, Any]) -> None:
    stream.write(orjson.dumps(obj) + b"\n")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="plugstream")
def main() -> None:
    """plugstream: EV charging availability from OCPI, OCM, HERE and eDRV feeds."""


@main.command()
@click.option(
    "--source", "-s", "source", required=True, type=SourceChoice(), help="Source format: ocpi, ocm, here or edrv."
)
@click.option(
    "--record-time",
    default=None,
    help="Record timestamp for the event-time fallbacks (RFC 3339 or epoch ms). Default: now.",
)
@click.option(
    "--max-skew",
    default=300.0,
    show_default=True,
    type=float,
    help="Seconds a source time may lie past the record time before it is distrusted.",
)
@click.option(
    "--max-bytes",
    default=DEFAULT_MAX_PAYLOAD_BYTES,
    show_default=True,
    type=int,
    help="Per-document size limit (for JSON Lines input).",
)
@click.option("--stats", is_flag=True, help="Print a summary line (JSON) to stderr at the end.")
@click.argument("file", type=click.File("rb"))
def normalize(
    source: str, record_time: str | None, max_skew: float, max_bytes: int, stats: bool, file: BinaryIO
) -> None:
    """Canonical records of FILE as JSON Lines on stdout (no Kafka needed).

    FILE ('-' for stdin) holds one JSON document, a JSON array of documents, or JSON Lines.
    Each rejected document (or part of one) is one JSON line on stderr:
    {"index", "kind", "message", "path"}. Exit status is 0 whenever the input was readable.
    """
    from datetime import timedelta

    moment = _record_time(record_time)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    counts = {"documents": 0, "records": 0, "rejected": 0, "skipped": 0}
    warnings: dict[str, int] = {}
    for index, (document, rejection) in enumerate(split_documents(file.read(), max_bytes)):
        counts["documents"] += 1
        ctx = NormalizeContext(record_time=moment, max_skew=timedelta(seconds=max_skew))
        if rejection is None:
            try:
                result = normalize_document(source, document, ctx)
            except Rejection as exc:
                rejection = exc
        if rejection is not None:
            counts["rejected"] += 1
            _write_jsonl(err, {"index": index, **rejection.as_dict()})
            continue
        for record in result.records:
            _write_jsonl(out, to_jsonable(record.__dict__))
        for partial in result.rejections:
            counts["rejected"] += 1
            _write_jsonl(err, {"index": index, **partial.as_dict()})
        counts["records"] += len(result.records)
        counts["skipped"] += sum(result.skipped.values())
        for field, n in ctx.warnings.counts.items():
            warnings[field] = warnings.get(field, 0) + n
    out.flush()
    if stats:
        _write_jsonl(err, {"summary": counts, "warnings": warnings})
    err.flush()


if __name__ == "__main__":  # pragma: no cover
    main()
