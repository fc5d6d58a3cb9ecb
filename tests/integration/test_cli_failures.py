"""Every command-line failure ends with one clear line and a non-zero exit; long commands show
progress (issue: a command line that never confuses)."""

from __future__ import annotations

import functools
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from streams.broker import free_port

from ..helpers import FIXTURES
from .workers import run_cli

pytestmark = pytest.mark.integration


plugstream = functools.partial(run_cli, timeout=60)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    text = result.stderr.decode()
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert result.returncode != 0, text
    assert len(errors) == 1, text
    assert "Traceback" not in text and "Unclosed" not in text and "never awaited" not in text, text
    return errors[0]


@pytest.mark.parametrize(
    "args",
    [
        ("replay", str(FIXTURES / "replay_log.jsonl"), "--no-progress"),
        ("snapshot", "--out", "-"),
        ("simulate", "--duration", "1"),
        ("topics", "create"),
        ("worker", "--without-web"),
    ],
)
def test_an_unreachable_broker_is_one_line_naming_the_setting(args: tuple[str, ...]) -> None:
    line = one_error_line(plugstream(*args, "--broker", f"kafka://127.0.0.1:{free_port()}"))
    assert "cannot reach the Kafka broker" in line and "--broker" in line and "PLUGSTREAM_BROKER" in line


def test_a_broker_url_with_another_scheme_is_refused() -> None:
    line = one_error_line(plugstream("snapshot", "--out", "-", "--broker", "http://127.0.0.1:9092"))
    assert "kafka://" in line and "http://" in line


def test_the_embedded_broker_refuses_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(plugstream("broker", "--port", str(port), timeout=20))
    assert f"port {port}" in line and "in use" in line


def test_the_embedded_broker_names_its_log_and_removes_it_on_a_clean_exit() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "broker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        ready = process.stdout.readline().decode()
        assert ready.startswith("embedded broker ready: kafka://127.0.0.1:")
        log_line = process.stderr.readline().decode()
        log = Path(log_line.split("log: ", 1)[1].split(" ", 1)[0])
        assert log.exists()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(20)
    assert process.returncode == 0 and not log.exists()


def test_a_busy_web_port_stops_the_worker_before_it_joins_a_group(broker) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = plugstream("worker", "--broker", broker.url, "--web-port", str(port), timeout=60)
        line = one_error_line(result)
    assert f"127.0.0.1:{port}" in line and "cannot serve HTTP" in line
    assert time.monotonic() - started < 30
    assert b"restored partition" not in result.stderr  # never got as far as the consumer groups


def test_replay_counts_as_it_publishes_and_ctrl_c_says_how_far_it_got(broker, tmp_path: Path) -> None:
    entries = [
        {
            "source": "edrv",
            "timestamp": 1_772_359_200_000 + i * 1000,
            "payload": {"_id": f"c{i}", "chargestation": "s", "status": "Available"},
        }
        for i in range(600)
    ]
    log = tmp_path / "paced.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "replay",
            str(log),
            "--broker",
            broker.url,
            "--speed",
            "100",
            "--no-progress",
        ],
        stderr=subprocess.PIPE,
    )
    time.sleep(3.5)  # ~250 records at 100x real time
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=20)[1].decode()
    assert process.returncode == 130, err
    line = next(line for line in err.splitlines() if line.startswith("interrupted"))
    sent = int(line.split("published ", 1)[1].split(" ", 1)[0])
    assert 50 < sent < 600 and "of 600 records" in line


def test_snapshot_writes_to_stdout(broker) -> None:
    import asyncio

    from streams.topics import ensure_topics, topic_specs

    asyncio.run(ensure_topics(broker.bootstrap, topic_specs("plugstream", 86_400_000), 4))
    result = plugstream("snapshot", "--broker", broker.url, "--out", "-")
    assert result.returncode == 0 and orjson.loads(result.stdout) == {"evses": []}
    assert not Path("-").exists()


def test_simulate_and_up_show_progress(tmp_path: Path) -> None:
    web = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "up", "--web-port", str(web), "--rate", "50"],
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 40
        lines = []
        while time.monotonic() < deadline:
            line = process.stderr.readline().decode()
            lines.append(line)
            if "raw records/s" in line:
                break
        status = next((text for text in lines if "raw records/s" in text), "")
        assert "EVSEs" in status and "Ctrl-C to stop" in status, lines
        assert any(f"http://127.0.0.1:{web}/" in text for text in lines)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert process.returncode == 0
