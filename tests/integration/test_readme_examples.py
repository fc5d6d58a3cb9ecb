"""The README's examples run as written: every ``plugstream …`` line of its ``bash`` blocks and
every ``curl …`` example of its HTTP API table.

The commands are read from ``README.md`` itself, so an example that stops working — or a new
one nobody taught this test to run — fails here. What is adapted, and why:

* commands run from a scratch directory holding a link to ``tests/`` (the fixtures they name),
  so files they write (``--dump out.json``) do not land in the checkout;
* the cluster section's ``plugstream topics create`` / ``plugstream worker --web-port 6066``
  run against the embedded broker (``PLUGSTREAM_BROKER``) instead of a SASL_SSL cluster, which
  this machine has none of; the port 6066 becomes a free port;
* the ``curl`` examples go to that worker, fed by ``plugstream simulate`` (20 EVSEs hold every
  id the examples name: ``ocpi:NL:SIM:E0``, ``edrv:sim-c-3-1``, an OCM charger in Leeds);
  ``curl`` gets ``--max-time`` so the live stream example ends.

``plugstream up`` (the first screen's main job) runs until Ctrl-C; ``test_cli_failures.py``
(``test_simulate_and_up_show_progress``) runs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.broker import free_port

from .workers import run_cli, stop

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PORT = "6066"


def bash_blocks(text: str) -> Iterator[str]:
    for match in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
        yield match.group(1)


def readme_commands() -> list[str]:
    """``plugstream …`` lines of the README's bash blocks, trailing comments dropped."""
    commands = []
    for block in bash_blocks(README.read_text()):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("plugstream "):
                commands.append(" ".join(shlex.split(line, comments=True)))
    return commands


def readme_curls() -> list[str]:
    """The ``curl …`` examples, as inline code anywhere in the README."""
    return re.findall(r"`(curl [^`]+)`", README.read_text())


def cli_args(command: str) -> list[str]:
    """The ARGS of ``plugstream ARGS``."""
    words = shlex.split(command)
    assert words[0] == "plugstream", command
    return words[1:]


def argv(command: str) -> list[str]:
    """``plugstream ARGS`` as this interpreter's console command (independent of ``PATH``)."""
    return [sys.executable, "-m", "streams.cli", *cli_args(command)]


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    return tmp_path


def run(command: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    done = run_cli(*cli_args(command), env=env, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, (command, done.returncode, done.stderr.decode()[-3000:])
    return done.stdout.decode()


def test_the_readme_shows_the_commands_this_test_runs() -> None:
    """Each README command is of a kind the tests below run; a new kind must be taught here."""
    kinds = {"normalize", "replay", "topics", "worker"}
    commands = readme_commands()
    assert {c.split()[1] for c in commands} <= kinds, commands
    assert {c.split()[1] for c in commands} == kinds, "an example kind vanished from the README"
    assert len(readme_curls()) >= 10


def test_normalize_examples(scratch: Path) -> None:
    examples = [c for c in readme_commands() if c.split()[1] == "normalize"]
    assert len(examples) >= 4
    for command in examples:
        lines = run(command, scratch).splitlines()
        assert lines, command
        for line in lines:
            record = orjson.loads(line)
            assert record["connectorUid"] and record["evseUid"] and record["status"], (command, record)


def test_replay_examples(scratch: Path) -> None:
    examples = [c for c in readme_commands() if c.split()[1] == "replay"]
    assert examples
    for command in examples:
        words = shlex.split(command)
        out = words[words.index("--dump") + 1]
        stdout = run(command, scratch)
        dump = orjson.loads(stdout if out == "-" else (scratch / out).read_bytes())
        engine = words[words.index("--engine") + 1] if "--engine" in words else "native"
        assert dump["stats"]["engine"] == engine, command
        assert dump["evses"] and dump["stats"]["accepted"] > 0, command
        assert all(e["lastUpdateTimestamp"] for e in dump["evses"]), command


def curl(example: str, port: int) -> tuple[int, str]:
    words = shlex.split(example.replace(f":{PORT}", f":{port}"))
    done = subprocess.run(["curl", "--max-time", "4", *words[1:]], capture_output=True, timeout=30)
    return done.returncode, done.stdout.decode()


async def wait_healthy(port: int, worker: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["curl", "-sf", f"127.0.0.1:{port}/api/health"], capture_output=True).returncode != 0:
        assert worker.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the worker never became healthy: " + log.read_text()[-3000:]
        await asyncio.sleep(0.5)


def check(path: str, query: str, body: str) -> None:
    """The key fields each example's answer must carry."""
    if path == "/api/stream":
        assert "event: evse" in body, body[:500]
        return
    if path == "/metrics":
        assert "plugstream_" in body, body[:500]
        return
    data = orjson.loads(body)
    if path.startswith("/api/evse/") and path.endswith("/windows"):
        assert data["evseUid"] == path.split("/")[3] and isinstance(data["items"], list), data
    elif path.startswith("/api/evse/"):
        assert data["evseUid"] == path.rsplit("/", 1)[1] and data["connectors"], data
    elif path == "/api/evse":
        assert data["total"] >= 1 and data["items"], (query, data)
        assert all(item["source"] == "ocm" and item["available"] >= 1 for item in data["items"]), data
    elif path.startswith("/api/connectors/"):
        assert data["connectorUid"] == path.rsplit("/", 1)[1] and data["evseUid"], data
    elif path == "/api/windows":
        assert isinstance(data["items"], list), data
    elif path == "/api/stats":
        assert data["engine"] == "native" and data["accepted"] > 0 and data["problems"] == [], data
    elif path == "/api/summary":
        assert data, data
    elif path == "/api/dead-letters":
        assert isinstance(data, dict | list), data
    elif path in ("/api/health", "/api/live"):
        assert data, data


async def test_cluster_and_http_examples(broker, scratch: Path) -> None:
    """``topics create``, ``worker`` and every ``curl`` example, against the embedded broker."""
    env = {**os.environ, "PLUGSTREAM_BROKER": f"kafka://{broker.bootstrap}", "PLUGSTREAM_WINDOW_SECONDS": "2"}
    commands = [c for c in readme_commands() if c.split()[1] in ("topics", "worker")]
    assert any(c.startswith("plugstream topics create") for c in commands), commands
    port = free_port()
    log = scratch / "worker.log"
    workers: list[subprocess.Popen[bytes]] = []  # the worker, then the simulated feed
    sink = open(log, "ab")  # noqa: SIM115 - the children write to it until the end
    try:
        for command in commands:
            if command.startswith("plugstream topics"):
                assert "connector-status" in run(command, scratch, env)
                continue
            if workers:  # the same worker again (the README shows it with and without options)
                continue
            command = command.replace(PORT, str(port)) if PORT in command else f"{command} --web-port {port}"
            workers.append(subprocess.Popen(argv(command), cwd=scratch, env=env, stdout=sink, stderr=sink))
        assert workers, commands
        await wait_healthy(port, workers[0], log)
        feed = f"plugstream simulate --broker kafka://{broker.bootstrap} --evses 20 --rate 20 --duration 40"
        workers.append(subprocess.Popen(argv(feed), cwd=scratch, env=env, stdout=subprocess.DEVNULL, stderr=sink))
        examples = readme_curls()
        assert shutil.which("curl"), "curl is needed to run the README's curl examples"
        deadline = time.monotonic() + 60
        for example in examples:
            url = next(w for w in shlex.split(example) if w.startswith("127.0.0.1"))
            path, _, query = url.split(f":{PORT}", 1)[1].partition("?")
            while True:  # the view catches up with the feed within seconds
                code, body = curl(example, port)
                streaming = path == "/api/stream" and code == 28  # --max-time ended the live stream
                try:
                    assert code == 0 or streaming, (example, code, body[:500])
                    check(path, query, body)
                    break
                except (AssertionError, KeyError, ValueError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
    finally:
        for worker in workers:
            stop(worker)
        sink.close()
    assert workers[0].returncode == 0, log.read_text()[-3000:]
