"""Valid records interleaved with every kind of malformed record at a 10% rate."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from streams.broker import EmbeddedBroker
from streams.engine import producer_for
from streams.simulate import make_log

from .test_pipeline import dead_letters, run_log

pytestmark = pytest.mark.integration

BAD_PAYLOADS = [  # (source, payload bytes, expected errorKind)
    ("ocpi", b'{"uid": "X1", "status": ', "malformed_json"),
    ("ocm", b'{"ID": 5, "Connections": [{"ID": 1, "StatusTypeID": "caf\xe9"}]}', "not_utf8"),
    ("here", b" " * 1_100_000 + b"{}", "oversized"),
    ("edrv", b'"just a string"', "not_an_object"),
    ("ocpi", b'{"status": "AVAILABLE", "connectors": [{"id": "1"}]}', "missing_id"),
    ("ocpi", b'{"uid": "X2", "status": 42, "connectors": [{"id": "1"}]}', "wrong_type"),
    ("ocpi", b'{"uid": "X3", "status": "ASLEEP", "connectors": [{"id": "1"}]}', "unknown_status"),
    (
        "here",
        b'{"id": "h-bad", "connectors": [{"chargingPoint": {"numberOfConnectors": 1, "numberOfInUse": 99}}]}',
        "absurd_value",
    ),
    ("edrv", b'{"_id": "c-bad", "chargestation": "s-bad"}', "missing_status"),
    ("ocm", b'{"ID": -7, "Connections": []}', "invalid_id"),
]


async def test_valid_records_give_exact_tables_and_every_bad_one_is_dead_lettered(tmp_path: Path) -> None:
    valid = make_log(evse_count=60, records=1500, seed=5)
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in valid))
    with EmbeddedBroker() as reference:
        _, expected = await run_log(reference.bootstrap, [clean], partitions=3)

    rng = random.Random(1)
    bad_count = len(valid) // 10
    mixed_lines, bad_expected = [], []
    positions = set(rng.sample(range(len(valid) + bad_count), bad_count))
    valid_iter = iter(valid)
    for index in range(len(valid) + bad_count):
        if index in positions:
            source, payload, kind = BAD_PAYLOADS[len(bad_expected) % len(BAD_PAYLOADS)]
            bad_expected.append(kind)
            mixed_lines.append((source, payload, 1_772_359_200_000 + index, source))
        else:
            entry = next(valid_iter)
            # OCPP records carry their charge point id as the key (simulate.make_log sets it)
            key = entry.get("key", entry["source"])
            mixed_lines.append((entry["source"], orjson.dumps(entry["payload"]), entry["timestamp"], key))

    with EmbeddedBroker() as broker:
        from streams.config import Settings
        from streams.engine import NativeEngine

        pipeline = NativeEngine(Settings(partitions=3), broker.bootstrap)
        await pipeline.start()
        try:
            ends: dict[tuple[str, int], int] = {}
            async with producer_for(broker.bootstrap) as producer:
                for source, payload, timestamp, key in mixed_lines:  # raw bytes, as a real producer would send
                    meta = await (
                        await producer.send(f"raw.{source}", payload, key=key.encode(), timestamp_ms=timestamp)
                    )
                    ends[(meta.topic, meta.partition)] = meta.offset + 1
            await pipeline.wait_processed(ends, timeout=120)
            got = pipeline.evses()
        finally:
            await pipeline.stop()
        letters = await dead_letters(broker.bootstrap)

    assert got == expected["evses"]
    assert sorted(d["errorKind"] for d in letters) == sorted(bad_expected)
    sent = {payload for _, payload, _, _ in mixed_lines}
    assert all(d["payload"] in sent and d["stage"] == "normalize" for d in letters)
