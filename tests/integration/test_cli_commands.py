"""The public commands, run as a user runs them (a subprocess of ``plugstream``)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ..helpers import FIXTURES
from .workers import run_cli

pytestmark = pytest.mark.integration
LOG = FIXTURES / "replay_log.jsonl"


plugstream = run_cli


def test_replay_embedded_dump(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = plugstream("replay", str(LOG), "--embedded", "--dump", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr.decode()
    dump = orjson.loads(out.read_bytes())
    assert set(dump) == {"evses", "windows", "stats"}
    assert [e["evseUid"] for e in dump["evses"]] == ["edrv:cs1", "here:h1", "ocm:77", "ocpi:NL:PLG:E1"]
    assert {k: dump["stats"][k] for k in ("accepted", "duplicates", "stale", "skipped", "rejected", "late")} == {
        "accepted": 12,
        "duplicates": 3,
        "stale": 2,
        "skipped": 1,
        "rejected": 4,
        "late": 1,
    }
    assert b"processed: 4 EVSEs" in result.stderr


def test_dump_needs_embedded_and_bad_paths_are_clear(tmp_path: Path) -> None:
    result = plugstream("replay", str(LOG), "--dump", str(tmp_path / "x.json"))
    assert result.returncode == 2 and b"--dump needs --embedded" in result.stderr
    result = plugstream("replay", str(tmp_path / "missing.jsonl"), "--embedded")
    assert result.returncode == 2 and b"does not exist" in result.stderr


def test_topics_replay_and_snapshot_against_a_broker(broker, tmp_path: Path) -> None:
    env = {"PLUGSTREAM_BROKER": broker.url, "PLUGSTREAM_PARTITIONS": "3"}
    result = plugstream("topics", "create", env=env)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert any(line.startswith("evse-availability ") and "compact" in line for line in lines)
    assert any(line.startswith("raw.ocpi ") and "created" in line for line in lines)
    result = plugstream("replay", str(LOG), "--broker", broker.url, "--no-progress", env=env)
    assert result.returncode == 0 and b"published 15 records, 2 unreadable" in result.stderr
    result = plugstream("snapshot", "--broker", broker.url, "--out", str(tmp_path / "snap.json"), env=env)
    assert result.returncode == 0 and orjson.loads((tmp_path / "snap.json").read_bytes()) == {"evses": []}
