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

from .adapters import REGISTRY
from .adapters.base import DEFAULT_MAX_CONNECTORS, DEFAULT_MAX_PAYLOAD_BYTES
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="plugstream")
def main() -> None:
    """plugstream: EV charging availability from OCPI, OCM, HERE, eDRV and OCPP feeds."""


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
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to normalize with (default: one per CPU for an input of 1 MB and 1,000 documents or more). "
    "The output is the same, in input order, whatever the number.",
)
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
    workers: int | None,
    file: BinaryIO,
) -> None:
    """Canonical records of FILE as JSON Lines on stdout (no Kafka needed).

    FILE ('-' for stdin) holds one JSON document, a JSON array of documents, or JSON Lines.
    Each rejected document (or part of one) is one JSON line on stderr:
    {"index", "kind", "message", "path"}. Exit status is 0 whenever the input was readable.
    """
    from datetime import timedelta

    from .batch import Job, normalize_input, read_input, worker_count, write_jsonl

    job = Job(
        source=source,
        record_time=_record_time(record_time),
        max_skew=timedelta(seconds=max_skew),
        max_bytes=max_bytes,
        max_connectors=max_connectors,
        key=None if key is None else key.encode(),
        headers=[_header(value) for value in headers] or None,
    )
    source = read_input(file, max_bytes)
    err = sys.stderr.buffer
    tally = normalize_input(job, source, sys.stdout.buffer, err, worker_count(workers, source))
    if stats:
        write_jsonl(err, {"summary": tally.counts, "warnings": tally.warnings})
    err.flush()


# --- pipeline commands -----------------------------------------------------------------------


def _settings(**overrides: Any) -> Any:
    """Settings from ``PLUGSTREAM_*`` plus the command's options; a bad value is one clear line."""
    from pydantic import ValidationError

    from .config import load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        )
        raise click.ClickException(
            f"bad setting: {problems} (from the command line or a PLUGSTREAM_* variable)"
        ) from None


BROKER_HINT = "start one (plugstream broker) or point --broker / PLUGSTREAM_BROKER at yours"


def _quiet_clients() -> None:
    """Short commands report Kafka trouble in one line of their own, not aiokafka's."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


async def _require_broker(target: Any, timeout: float = 8.0) -> None:
    """Fail fast, in one line, when the broker does not answer."""
    from .kafka import BrokerProbe, as_kafka

    probe = BrokerProbe(target, timeout=timeout)
    level = logging.getLogger("plugstream.kafka").level
    logging.getLogger("plugstream.kafka").setLevel(logging.CRITICAL)
    try:
        if not await probe.check():
            raise click.ClickException(
                f"cannot reach the Kafka broker at {as_kafka(target).bootstrap} ({probe.last_error}); {BROKER_HINT}"
            )
    finally:
        await probe._reset()
        logging.getLogger("plugstream.kafka").setLevel(level)


def _run(coro: Any) -> Any:
    """``asyncio.run`` with Kafka and start-up failures turned into one clear line (exit 1)."""
    import asyncio

    from aiokafka.errors import KafkaError

    from .api import ApiStartError
    from .broker import BrokerStartError
    from .store import StoreError

    try:
        return asyncio.run(coro)
    except KafkaError as exc:
        raise click.ClickException(
            f"Kafka: {exc}; check --broker / PLUGSTREAM_BROKER and the security settings"
        ) from None
    except (ApiStartError, BrokerStartError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None


async def _cancel_on_signal(coro: Any) -> Any:
    """Run ``coro``; Ctrl-C / SIGTERM cancel it (it decides what to report)."""
    import asyncio
    import signal

    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    return await coro


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


def _engine_option(function: Any) -> Any:
    return click.option(
        "--engine",
        type=click.Choice(["native", "faust"]),
        default=None,
        help="Pipeline engine (default: $PLUGSTREAM_ENGINE or native).",
    )(function)


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (default: a free one).")
def broker(port: int) -> None:
    """Run the embedded Kafka-compatible broker (Tansu) and print its bootstrap address."""
    import asyncio

    from .broker import EmbeddedBroker

    async def serve() -> None:
        with EmbeddedBroker(port=port) as embedded:
            click.echo(f"embedded broker ready: {embedded.url}  (PLUGSTREAM_BROKER={embedded.url})")
            click.echo(f"log: {embedded.log_path} (removed on a clean exit); Ctrl-C to stop", err=True)
            while embedded.alive():
                await asyncio.sleep(0.5)
            raise click.ClickException(f"the embedded broker stopped by itself; its log: {embedded.log_path}")

    _run_until_signal(serve)


class _Progress:
    """The worker's status line: raw records/s, EVSEs, lag — at most every ``every`` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        import time

        self.every = every
        self._clock = time.monotonic
        self._last_at = self._clock()
        self._last_raw = 0
        self._printed = ""

    def line(self, stats: dict[str, Any], evses: int, lag: dict[str, int], problems: list[str]) -> str | None:
        now = self._clock()
        if now - self._last_at < self.every:
            return None
        rate = (stats["rawRecords"] - self._last_raw) / (now - self._last_at)
        self._last_at, self._last_raw = now, stats["rawRecords"]
        text = (
            f"{rate:,.0f} raw records/s · {evses:,} EVSEs · raw {stats['rawRecords']:,}"
            f" · accepted {stats['accepted']:,}"
            f" · duplicates {stats['duplicates']:,} · stale {stats['stale']:,} · rejected {stats['rejected']:,}"
            f" · lag {sum(lag.values()):,}"
        )
        if problems:
            text += " · PROBLEM: " + "; ".join(problems)
        if text == self._printed:
            return None
        self._printed = text
        return text + " · Ctrl-C to stop"


async def _worker(
    settings: Any,
    bootstrap: Any,
    broker_url: str,
    group: bool,
    web_port: int | None,
    extra: Any = None,
) -> None:
    """One worker: the engine, its HTTP API process, and the status it reports twice a second.

    Start-up order matters: the API process binds its port first (a port in use ends the
    worker before it joins any consumer group), then the engine starts.
    """
    import asyncio
    import contextlib

    from .api import ApiChild
    from .engines import create_engine
    from .kafka import BrokerProbe
    from .memory import trim_heap, tune_allocator
    from .status import WorkerMetrics, collect_status

    tune_allocator()
    await _require_broker(bootstrap)
    engine = create_engine(settings, bootstrap, group=group)
    probe = BrokerProbe(bootstrap)

    async def recreate_topics() -> None:  # a broker that came back empty has none of them
        from .topics import ensure_topics, topic_specs

        specs = topic_specs(settings.app_id, int(settings.window_retention_seconds * 1000))
        created = await ensure_topics(bootstrap, specs, settings.partitions, settings.replication_factor)
        if created:
            logging.getLogger("plugstream.worker").warning("the broker had lost topics; recreated %s", created)

    probe.on_recovered = recreate_topics
    api = None
    probe_task = feed = None
    worker_id = settings.worker_id or "worker"

    def problems() -> list[str]:
        found = engine.problems()
        if probe.unreachable_for() > settings.broker_unreachable_seconds:
            found.append(f"broker unreachable for {probe.unreachable_for():.0f}s ({probe.last_error})")
        if feed is not None and feed.done() and not feed.cancelled() and feed.exception() is not None:
            found.append(f"simulated feed stopped: {feed.exception()}")
        if api is not None and not api.alive():
            found.append("HTTP API process exited")
        return found

    try:
        if web_port is not None:
            api = ApiChild(broker_url, settings.web_host, web_port, settings.partitions, settings.api_nice)
            await api.start()
        await engine.start()
        if api is not None:
            click.echo(f"dashboard: {api.url}  (engine: {engine.name}; Ctrl-C to stop)", err=True)
        metrics = WorkerMetrics(engine, problems)
        probe_task = asyncio.create_task(probe.run(), name="broker-probe")
        feed = asyncio.create_task(extra, name="feed") if extra is not None else None
        extra = None
        progress = _Progress()
        ticks = 0
        while True:
            for task in engine.tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            found = problems()
            if api is not None:
                api.push(collect_status(engine, metrics, worker_id, found))
            sizes = engine.table_sizes()
            line = progress.line(engine.stats(), sizes.get("evse_state", 0), engine.lag(), found)
            if line is not None:
                click.echo(line, err=True)
            ticks += 1
            if ticks % 4 == 0:
                await asyncio.to_thread(trim_heap)  # ctypes drops the GIL: the loop keeps running
            await asyncio.sleep(0.5)
    finally:
        if extra is not None:  # a coroutine never scheduled: close it instead of leaking a warning
            extra.close()
        for task in (feed, probe_task):  # the feed first: its producer must close while the broker is up
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if api is not None:
            await api.stop()
        await engine.stop()


def _web_port(settings: Any, web_port: int | None, without_web: bool) -> int | None:
    return None if without_web else (web_port if web_port is not None else settings.web_port)


def _with_worker_id(settings: Any, port: int | None) -> Any:
    """The state directory follows the web port actually served (or ``PLUGSTREAM_WORKER_ID``)."""
    if settings.worker_id:
        return settings
    return settings.model_copy(update={"worker_id": str(port) if port is not None else "worker"})


def _worker_logging() -> None:
    from .kafka import quiet_kafka_logs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "faust", "mode", "streams.faust_transport"):  # Faust's own INFO is a table per rebalance
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_kafka_logs()


@main.command()
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option(
    "--web-port", type=click.IntRange(0, 65535), default=None, help="HTTP port (default: $PLUGSTREAM_WEB_PORT or 6066)."
)
@click.option("--without-web", is_flag=True, help="Do not serve HTTP.")
@_engine_option
def worker(broker_url: str | None, web_port: int | None, without_web: bool, engine: str | None) -> None:
    """A worker against any Kafka: both stages in consumer groups, plus the HTTP API process."""
    from .kafka import Kafka

    settings = _settings(broker=broker_url, engine=engine)
    port = _web_port(settings, web_port, without_web)
    settings = _with_worker_id(settings, port)
    _worker_logging()
    _run_until_signal(lambda: _worker(settings, Kafka.from_settings(settings), settings.broker, True, port))


@main.command()
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option("--web-host", default=None, help="Address to serve on (default: $PLUGSTREAM_WEB_HOST or 127.0.0.1).")
@click.option(
    "--web-port", type=click.IntRange(0, 65535), default=None, help="HTTP port (default: $PLUGSTREAM_WEB_PORT or 6066)."
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="Partitions per topic (default: $PLUGSTREAM_PARTITIONS).",
)
@click.option("--attached", is_flag=True, hidden=True, help="Started by a worker: its status arrives on stdin.")
def api(
    broker_url: str | None, web_host: str | None, web_port: int | None, partitions: int | None, attached: bool
) -> None:
    """The HTTP API, live stream, metrics and dashboard alone, reading the output topics.

    Every worker starts one of these as its own process; run it by hand to serve queries from
    machines that run no worker (its health then covers the view only).
    """
    import asyncio
    import os

    from .api import run_api
    from .kafka import Kafka

    settings = _settings(broker=broker_url, web_host=web_host, web_port=web_port, partitions=partitions)
    if attached and settings.api_nice:
        os.nice(settings.api_nice)  # the pipeline first: this process yields the CPU to its worker
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    from .kafka import quiet_kafka_logs

    quiet_kafka_logs()
    if attached:  # a child of its worker: ends with it (end of stdin); the worker handles Ctrl-C
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(
            asyncio.run(run_api(settings, Kafka.from_settings(settings), settings.web_host, settings.web_port, True))
        )

    async def standalone() -> None:
        code = await run_api(settings, Kafka.from_settings(settings), settings.web_host, settings.web_port, False)
        if code:
            raise SystemExit(code)

    _run_until_signal(standalone)


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
    help="With --embedded: write the final tables here as JSON and exit ('-' for stdout).",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="Partitions per topic (default: $PLUGSTREAM_PARTITIONS).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_engine_option
def replay(
    logs: tuple[Path, ...],
    broker_url: str | None,
    speed: float | None,
    fast: bool,
    embedded: bool,
    dump: Path | None,
    partitions: int | None,
    no_progress: bool,
    engine: str | None,
) -> None:
    """Publish historical logs (JSON Lines or Avro container files) into the raw topics."""
    from .kafka import Kafka
    from .runner import PublishInterrupted, embedded_dump, publish

    if speed is not None and (fast or speed <= 0):
        raise click.UsageError("--speed takes a positive factor and excludes --as-fast-as-possible")
    if dump is not None and not embedded:
        raise click.UsageError("--dump needs --embedded (it runs the pipeline itself)")
    if engine is not None and not embedded:
        raise click.UsageError("--engine needs --embedded (otherwise the workers' engine processes the records)")
    settings = _settings(broker=broker_url, partitions=partitions, engine=engine)
    _quiet_clients()
    if embedded:
        result = _run(embedded_dump(list(logs), settings, progress=not no_progress))
        if dump is not None:
            data = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
            sys.stdout.buffer.write(data) if str(dump) == "-" else dump.write_bytes(data)
        stats = result["stats"]
        click.echo(
            f"processed: {len(result['evses'])} EVSEs, {len(result['windows'])} windows, "
            f"accepted {stats['accepted']}, duplicates {stats['duplicates']}, stale {stats['stale']}, "
            f"skipped {stats['skipped']}, rejected {stats['rejected']}, late {stats['late']}"
            f" (engine: {stats['engine']})" + (f" → {dump}" if dump and str(dump) != "-" else ""),
            err=True,
        )
        return
    target = Kafka.from_settings(settings)

    async def send() -> Any:
        await _require_broker(target)
        return await publish(target, list(logs), settings.partitions, speed, progress=not no_progress)

    try:
        report = _run(_cancel_on_signal(send()))
    except PublishInterrupted as stopped:
        click.echo(f"interrupted: published {stopped.report.published} of {stopped.total} records", err=True)
        raise SystemExit(130) from None
    click.echo(f"published {report.published} records, {report.dead_letters} unreadable → plugstream.dlq", err=True)


@main.command()
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option("--out", required=True, help="Where to write the JSON ('-' for stdout).")
def snapshot(broker_url: str | None, out: str) -> None:
    """Rebuild the per-EVSE view from the evse-availability topic, as a downstream consumer would."""

    from .kafka import Kafka
    from .runner import snapshot as take

    settings = _settings(broker=broker_url)
    _quiet_clients()
    target = Kafka.from_settings(settings)

    async def run() -> Any:
        await _require_broker(target)
        return await take(target, int(settings.staleness_seconds * 1000))

    result = _run(run())
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(out).write_bytes(data)
    skipped = sum(result.get("unreadable", {}).values())
    note = f" ({skipped} unreadable records skipped)" if skipped else ""
    click.echo(f"{len(result['evses'])} EVSEs → {'stdout' if out == '-' else out}{note}", err=True)


@main.command()
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option(
    "--evses", type=click.IntRange(min=1), default=200, show_default=True, help="Simulated EVSEs (all five formats)."
)
@click.option("--rate", type=click.FloatRange(min=0.01), default=20.0, show_default=True, help="Records per second.")
@click.option("--duration", type=click.FloatRange(min=0), default=None, help="Seconds to run (default: until Ctrl-C).")
@click.option("--seed", type=int, default=7, show_default=True)
def simulate(broker_url: str | None, evses: int, rate: float, duration: float | None, seed: int) -> None:
    """Publish a simulated live feed into the raw topics."""
    from .kafka import Kafka
    from .simulate import run_simulation

    settings = _settings(broker=broker_url)
    _quiet_clients()
    target = Kafka.from_settings(settings)

    def report(sent: int, seconds: float) -> None:
        click.echo(
            f"simulate: {sent:,} records in {seconds:,.0f}s ({sent / max(seconds, 1e-9):,.1f}/s) · Ctrl-C to stop",
            err=True,
        )

    async def run() -> None:
        await _require_broker(target)
        sent = await run_simulation(target, evses, rate, duration, seed, on_progress=report)
        click.echo(f"simulate: done, {sent:,} records sent", err=True)

    _run_until_signal(run)


@main.command()
@click.option("--evses", type=click.IntRange(min=1), default=200, show_default=True, help="Simulated EVSEs.")
@click.option(
    "--rate", type=click.FloatRange(min=0.01), default=20.0, show_default=True, help="Simulated records per second."
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Dashboard port (default: $PLUGSTREAM_WEB_PORT or 6066).",
)
@click.option(
    "--window-seconds",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Window size (shorter than the 300 s default, so a demo shows windows closing within minutes).",
)
@_engine_option
def up(evses: int, rate: float, web_port: int | None, window_seconds: float, engine: str | None) -> None:
    """Everything, no setup: embedded broker + worker + simulated feed + dashboard."""
    from .broker import EmbeddedBroker
    from .simulate import run_simulation

    settings = _settings(window_seconds=window_seconds, engine=engine)
    port = _web_port(settings, web_port, False)
    settings = _with_worker_id(settings, port)
    _worker_logging()

    async def everything() -> None:
        with EmbeddedBroker() as embedded:
            click.echo(f"embedded broker: {embedded.url} (log: {embedded.log_path})", err=True)
            feed = run_simulation(embedded.bootstrap, evses, rate)
            await _worker(settings, embedded.bootstrap, embedded.url, False, port, extra=feed)

    _run_until_signal(everything)


@main.group()
def topics() -> None:
    """Topic provisioning."""


@topics.command("create")
@click.option("--broker", "broker_url", default=None, help="Kafka URL (default: $PLUGSTREAM_BROKER).")
@click.option("--partitions", type=click.IntRange(min=1), default=None)
@click.option("--replication-factor", type=click.IntRange(min=1), default=None)
def topics_create(broker_url: str | None, partitions: int | None, replication_factor: int | None) -> None:
    """Create every topic the pipeline uses (partitions, replication, cleanup policy)."""

    from .kafka import Kafka
    from .topics import ensure_topics, topic_specs

    settings = _settings(broker=broker_url, partitions=partitions, replication_factor=replication_factor)
    _quiet_clients()
    specs = topic_specs(settings.app_id, int(settings.window_retention_seconds * 1000))
    target = Kafka.from_settings(settings)

    async def create() -> list[str]:
        await _require_broker(target)
        return await ensure_topics(target, specs, settings.partitions, settings.replication_factor)

    created = _run(create())
    for spec in specs:
        click.echo(f"{spec.name:40} {'created' if spec.name in created else 'exists'}  {spec.config()}")


if __name__ == "__main__":  # pragma: no cover
    main()
