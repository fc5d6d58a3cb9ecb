"""The HTTP API in its own process, so no amount of HTTP traffic can slow processing.

A worker (``plugstream worker`` / ``up``) starts ``plugstream api --attached`` as a child
(:class:`ApiChild`) and writes a :class:`~streams.interfaces.WorkerStatus` line to its stdin
twice a second. The child binds its port first — a port in use fails the worker before it
joins any consumer group — then waits for the output topics, loads the global view
(``streams/view.py``) and serves the API, dashboard and metrics. It runs at a lower CPU
priority than the worker (``PLUGSTREAM_API_NICE``, default 10): when both want the CPU, the
pipeline wins. It exits when its worker does (end of stdin, or the parent-death signal).

``plugstream api`` without ``--attached`` is the same server for a separate deployment: it
answers every query from the topics, and its health covers only the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from typing import Any

import orjson

from .interfaces import WorkerStatus
from .kafka import Kafka

log = logging.getLogger("plugstream.api")
LISTENING = b"listening "
FAILED = b"error "


class PipeStatus:
    """A :class:`~streams.interfaces.StatusSource` fed by the worker through stdin."""

    attached = True

    def __init__(self) -> None:
        self._latest: WorkerStatus | None = None
        self._at: float | None = None
        self.closed = asyncio.Event()

    def latest(self) -> WorkerStatus | None:
        return self._latest

    def age_seconds(self) -> float | None:
        return None if self._at is None else time.monotonic() - self._at

    def take(self, line: bytes) -> None:
        try:
            status = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("ignoring an unreadable status line from the worker")
            return
        if isinstance(status, dict):
            self._latest, self._at = status, time.monotonic()

    async def follow(self, reader: asyncio.StreamReader) -> None:
        """Read status lines until the worker closes the pipe."""
        try:
            while line := await reader.readline():
                self.take(line)
        finally:
            self.closed.set()


class NoWorker:
    """The status source of a standalone API: no worker of its own to report on."""

    attached = False

    def latest(self) -> None:
        return None

    def age_seconds(self) -> None:
        return None


async def wait_for_topics(bootstrap: str | Kafka, names: list[str], stop: asyncio.Event | None = None) -> None:
    """Until every topic in ``names`` exists (the worker creates them). Never creates one:
    a topic auto-created by a metadata request would get the broker's default partitions."""
    from . import kafka

    warned = False
    while True:
        admin = kafka.admin(bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            if all(name in existing for name in names):
                return
        except Exception as exc:  # broker not there (yet): keep waiting, health says why
            if not warned:
                log.warning("waiting for the broker: %s", exc)
                warned = True
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        if stop is not None and stop.is_set():
            raise asyncio.CancelledError
        await asyncio.sleep(0.5)


async def run_api(settings: Any, bootstrap: str | Kafka, host: str, port: int, attached: bool) -> int:
    """Serve until stopped (attached: until the worker closes stdin). Returns an exit code."""
    from .topics import DLQ, EVSE_AVAILABILITY, EVSE_AVAILABILITY_WINDOWED
    from .view import GlobalView
    from .web import build_app, serve

    status: PipeStatus | NoWorker = PipeStatus() if attached else NoWorker()
    view = GlobalView(bootstrap, settings.partitions, int(settings.staleness_seconds * 1000))
    token = settings.api_token.get_secret_value() if settings.api_token else None
    try:
        runner = await serve(build_app(view, status, token, settings.status_stale_seconds), host, port)
    except OSError as exc:
        _say(FAILED + f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}".encode())
        return 1
    _say(LISTENING + f"http://{host}:{port}/".encode())
    stopped = asyncio.Event()
    follower = None
    if isinstance(status, PipeStatus):
        reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        follower = asyncio.create_task(status.follow(reader), name="status")
        follower.add_done_callback(lambda _: stopped.set())
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await wait_for_topics(bootstrap, [EVSE_AVAILABILITY, EVSE_AVAILABILITY_WINDOWED, DLQ], stopped)
            await view.start()
        await stopped.wait()
    finally:
        await runner.cleanup()
        await view.stop()
        if follower is not None:
            follower.cancel()
    return 0


def _say(line: bytes) -> None:
    """One line to the worker (or the terminal) on stdout."""
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


class ApiStartError(RuntimeError):
    """The API process could not start (message: why, in one line)."""


class ApiChild:
    """The worker's handle on its API process."""

    def __init__(self, broker_url: str, host: str, port: int, partitions: int, nice: int = 10) -> None:
        self.broker_url = broker_url
        self.host = host
        self.port = port
        self.partitions = partitions
        self.nice = nice
        self.process: asyncio.subprocess.Process | None = None
        self.url = f"http://{host}:{port}/"
        self.dropped = 0

    async def start(self, timeout: float = 30.0) -> None:
        """Start the child and wait until it serves (raises :class:`ApiStartError`)."""
        from .broker import die_with_parent

        env = {**os.environ, "PLUGSTREAM_API_NICE": str(self.nice)}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streams.cli",
            "api",
            "--attached",
            "--broker",
            self.broker_url,
            "--web-host",
            self.host,
            "--web-port",
            str(self.port),
            "--partitions",
            str(self.partitions),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent,
        )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            await self.stop()
            raise ApiStartError(f"the HTTP API did not start within {timeout:.0f}s") from None
        if line.startswith(LISTENING):
            self.url = line[len(LISTENING) :].decode().strip()
            return
        await self.stop()
        message = line[len(FAILED) :].decode().strip() if line.startswith(FAILED) else "the HTTP API exited"
        raise ApiStartError(message)

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def push(self, status: WorkerStatus) -> None:
        """Hand the child a status line; never waits (a child that is behind loses updates)."""
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            return
        transport = process.stdin.transport
        if transport.is_closing() or transport.get_write_buffer_size() > 4 * 1024 * 1024:
            self.dropped += 1
            return
        process.stdin.write(orjson.dumps(status) + b"\n")

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
