"""The ``plugstream`` command line.

Each subcommand reads settings at its own entry point; importing this module does nothing.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson

from .adapters import REGISTRY, NormalizeContext, Rejection, normalize_document
from .adapters.base import DEFAULT_MAX_CONNECTORS, DEFAULT_MAX_PAYLOAD_BYTES, decode_payload
from .timeparse import UnparseableTime, parse_timestamp, rfc3339


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

    A whole file that parses is one document (or the elements of a top-level array, unless
    it is one OCPP-J frame); otherwise it is read as JSON Lines, each line a document that
    may be rejected alone.
    """
    stripped = raw.lstrip(b"\xef\xbb\xbf").strip()
    if not stripped:
        return []
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        pass
    else:
        if isinstance(whole, list) and not (whole and whole[0].__class__ is int):
            return [(doc, None) for doc in whole]
        return [(whole, None)]  # one document (an OCPP-J frame [2, id, action, payload] is one too)
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
    """plugstream: EV charging availability from OCPI, OCM, HERE, eDRV and OCPP feeds."""


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


def _header(value: str) -> tuple[str, bytes]:
    name, sep, text = value.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"{value!r}: use NAME=VALUE")
    return name.strip(), text.encode()


@main.command()
@click.option(
    "--source",
    "-s",
    "source",
    required=True,
    type=SourceChoice(),
    help="Source format: ocpi, ocm, here, edrv or ocpp.",
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
@click.option(
    "--max-connectors",
    default=DEFAULT_MAX_CONNECTORS,
    show_default=True,
    type=click.IntRange(min=1),
    help="A document expanding to more connectors is rejected (absurd_value).",
)
@click.option(
    "--key",
    default=None,
    help="The Kafka record key each document would carry: an OCPI Locations path "
    "(NL/ABC/LOC1/EVSE1[/1]) or an OCPP charge point id.",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME=VALUE",
    help="A Kafka record header each document would carry (repeatable), e.g. ocpi-evse-uid=E1.",
)
@click.option("--stats", is_flag=True, help="Print a summary line (JSON) to stderr at the end.")
@click.argument("file", type=click.File("rb"))
def normalize(
    source: str,
    record_time: str | None,
    max_skew: float,
    max_bytes: int,
    max_connectors: int,
    key: str | None,
    headers: tuple[str, ...],
    stats: bool,
    file: BinaryIO,
) -> None:
    """Canonical records of FILE as JSON Lines on stdout (no Kafka needed).

    FILE ('-' for stdin) holds one JSON document, a JSON array of documents, or JSON Lines.
    Each rejected document (or part of one) is one JSON line on stderr:
    {"index", "kind", "message", "path"}. Exit status is 0 whenever the input was readable.
    """
    from datetime import timedelta

    moment = _record_time(record_time)
    skew = timedelta(seconds=max_skew)
    record_key = None if key is None else key.encode()
    record_headers = [_header(value) for value in headers] or None
    out, err = RecordWriter(sys.stdout.buffer), sys.stderr.buffer
    counts = {"documents": 0, "records": 0, "rejected": 0, "skipped": 0}
    warnings: dict[str, int] = {}
    for index, (document, rejection) in enumerate(split_documents(file.read(), max_bytes)):
        counts["documents"] += 1
        ctx = NormalizeContext(
            record_time=moment,
            max_skew=skew,
            key=record_key,
            headers=record_headers,
            max_connectors=max_connectors,
        )
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
            out.write(record)
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


# --- pipeline commands -----------------------------------------------------------------------


def _settings(**overrides: Any) -> Any:
    from .config import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _run(coro: Any) -> Any:
    """``asyncio.run`` with Kafka failures turned into a clear one-line error (exit 1)."""
    import asyncio

    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(coro)
    except KafkaError as exc:
        raise click.ClickException(f"Kafka: {exc}. Check PLUGSTREAM_BROKER and the security settings.") from None


def _run_until_signal(coro_factory: Any) -> None:
    """Run an async main; Ctrl-C / SIGTERM cancel it cleanly."""
    import asyncio
    import signal

    async def runner() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        try:
            await coro_factory()
        except asyncio.CancelledError:
            click.echo("stopping…", err=True)

    _run(runner())


@main.command()
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one).")
def broker(port: int) -> None:
    """Run the embedded Kafka-compatible broker (Tansu) and print its bootstrap address."""
    import asyncio

    from .broker import EmbeddedBroker

    async def serve() -> None:
        with EmbeddedBroker(port=port) as embedded:
            click.echo(f"embedded broker ready: {embedded.url}  (PLUGSTREAM_BROKER={embedded.url})")
            click.echo(f"log: {embedded.log_path}; Ctrl-C to stop", err=True)
            while embedded.process is not None and embedded.process.poll() is None:
                await asyncio.sleep(0.5)

    _run_until_signal(serve)


async def _worker(settings: Any, bootstrap: Any, group: bool, web_port: int | None, extra: Any = None) -> None:
    import asyncio
    import contextlib

    from .memory import trim_heap, tune_allocator
    from .runner import LocalPipeline
    from .view import GlobalView
    from .web import build_app, serve

    tune_allocator()
    pipeline = LocalPipeline(settings, bootstrap, group=group)
    feed = None
    await pipeline.start()
    view = GlobalView(bootstrap, settings.partitions, int(settings.staleness_seconds * 1000))
    runner = None
    try:
        if web_port is not None:
            await view.start()
            token = settings.api_token.get_secret_value() if settings.api_token else None
            runner = await serve(build_app(pipeline, view, token), settings.web_host, web_port)
            click.echo(f"dashboard: http://{settings.web_host}:{web_port}/", err=True)
        feed = asyncio.create_task(extra, name="feed") if extra is not None else None
        tasks = list(pipeline.tasks) + ([feed] if feed is not None else [])
        last = None
        while True:
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            stats = pipeline.stats()
            line = (
                f"raw {stats['rawRecords']} · accepted {stats['accepted']} · duplicates {stats['duplicates']}"
                f" · stale {stats['stale']} · rejected {stats['rejected']} · late {stats['late']}"
            )
            if line != last:
                click.echo(line, err=True)
                last = line
            await asyncio.to_thread(trim_heap)  # ctypes drops the GIL: the loop keeps running
            await asyncio.sleep(2)
    finally:
        if feed is not None:  # stop the feed first: its producer must close while the broker is up
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed
        if runner is not None:
            await runner.cleanup()
        await view.stop()
        await pipeline.stop()


@main.command()
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option("--web-port", type=int, default=None, help="HTTP port (default: $PLUGSTREAM_WEB_PORT or 6066).")
@click.option("--without-web", is_flag=True, help="Do not serve HTTP.")
def worker(broker_url: str | None, web_port: int | None, without_web: bool) -> None:
    """A worker against any Kafka: both stages in one consumer group, plus the HTTP API."""
    from .kafka import Kafka

    settings = _settings(broker=broker_url)
    port = None if without_web else (web_port or settings.web_port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    _run_until_signal(lambda: _worker(settings, Kafka.from_settings(settings), True, port))


@main.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option("--speed", type=float, default=None, help="Replay at X times the original pace.")
@click.option("--as-fast-as-possible", "fast", is_flag=True, help="No pacing (the default).")
@click.option("--embedded", is_flag=True, help="Run the whole pipeline on a fresh embedded broker.")
@click.option(
    "--dump",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --embedded: write the final tables here as JSON and exit.",
)
@click.option("--partitions", type=int, default=None, help="Partitions per topic (default: $PLUGSTREAM_PARTITIONS).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def replay(
    logs: tuple[Path, ...],
    broker_url: str | None,
    speed: float | None,
    fast: bool,
    embedded: bool,
    dump: Path | None,
    partitions: int | None,
    no_progress: bool,
) -> None:
    """Publish historical logs (JSON Lines or Avro container files) into the raw topics."""

    from .kafka import Kafka
    from .runner import embedded_dump, publish

    if speed is not None and (fast or speed <= 0):
        raise click.UsageError("--speed takes a positive factor and excludes --as-fast-as-possible")
    if dump is not None and not embedded:
        raise click.UsageError("--dump needs --embedded (it runs the pipeline itself)")
    settings = _settings(broker=broker_url, partitions=partitions)
    if embedded:
        result = _run(embedded_dump(list(logs), settings, progress=not no_progress))
        if dump is not None:
            dump.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
        stats = result["stats"]
        click.echo(
            f"processed: {len(result['evses'])} EVSEs, {len(result['windows'])} windows, "
            f"accepted {stats['accepted']}, duplicates {stats['duplicates']}, stale {stats['stale']}, "
            f"skipped {stats['skipped']}, rejected {stats['rejected']}, late {stats['late']}"
            + (f" → {dump}" if dump else ""),
            err=True,
        )
        return
    report = _run(
        publish(Kafka.from_settings(settings), list(logs), settings.partitions, speed, progress=not no_progress)
    )
    click.echo(f"published {report.published} records, {report.dead_letters} unreadable → plugstream.dlq", err=True)


@main.command()
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def snapshot(broker_url: str | None, out: Path) -> None:
    """Rebuild the per-EVSE view from the evse-availability topic, as a downstream consumer would."""

    from .kafka import Kafka
    from .runner import snapshot as take

    settings = _settings(broker=broker_url)
    result = _run(take(Kafka.from_settings(settings), int(settings.staleness_seconds * 1000)))
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    click.echo(f"{len(result['evses'])} EVSEs → {out}", err=True)


@main.command()
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option("--evses", type=int, default=200, show_default=True, help="Simulated EVSEs (all four formats).")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Records per second.")
@click.option("--duration", type=float, default=None, help="Seconds to run (default: until Ctrl-C).")
@click.option("--seed", type=int, default=7, show_default=True)
def simulate(broker_url: str | None, evses: int, rate: float, duration: float | None, seed: int) -> None:
    """Publish a simulated live feed into the raw topics."""
    from .kafka import Kafka
    from .simulate import run_simulation

    settings = _settings(broker=broker_url)
    _run_until_signal(lambda: run_simulation(Kafka.from_settings(settings), evses, rate, duration, seed))


@main.command()
@click.option("--evses", type=int, default=200, show_default=True, help="Simulated EVSEs.")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Simulated records per second.")
@click.option("--web-port", type=int, default=None, help="Dashboard port (default 6066).")
def up(evses: int, rate: float, web_port: int | None) -> None:
    """Everything, no setup: embedded broker + worker + simulated feed + dashboard."""
    from .broker import EmbeddedBroker
    from .simulate import run_simulation

    settings = _settings(window_seconds=60.0)

    async def everything() -> None:
        with EmbeddedBroker() as embedded:
            click.echo(f"embedded broker: {embedded.url}", err=True)
            feed = run_simulation(embedded.bootstrap, evses, rate)
            await _worker(settings, embedded.bootstrap, False, web_port or settings.web_port, extra=feed)

    _run_until_signal(everything)


@main.group()
def topics() -> None:
    """Topic provisioning."""


@topics.command("create")
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option("--partitions", type=int, default=None)
@click.option("--replication-factor", type=int, default=None)
def topics_create(broker_url: str | None, partitions: int | None, replication_factor: int | None) -> None:
    """Create every topic the pipeline uses (partitions, replication, cleanup policy)."""

    from .kafka import Kafka
    from .topics import ensure_topics, topic_specs

    settings = _settings(broker=broker_url, partitions=partitions, replication_factor=replication_factor)
    specs = topic_specs(settings.app_id, int(settings.window_retention_seconds * 1000))
    created = _run(
        ensure_topics(Kafka.from_settings(settings), specs, settings.partitions, settings.replication_factor)
    )
    for spec in specs:
        click.echo(f"{spec.name:40} {'created' if spec.name in created else 'exists'}  {spec.config()}")


if __name__ == "__main__":  # pragma: no cover
    main()
