"""Stage 2 may take the canonical record object stage 1 built instead of decoding its bytes
(``streams.engine.Handoff``). That is only sound if both give the same state and outputs:
enum members vs plain text, floats and ints, defaults, times — proven here record by record."""

from __future__ import annotations

import contextlib

import orjson
import pytest

from streams import avro
from streams.adapters import NormalizeContext, Rejection, normalize_document
from streams.core import EvseState, Policy, apply_record, availability, new_evse
from streams.engine import Handoff, change_record
from streams.models import construct_status
from streams.simulate import make_log
from streams.timeparse import from_millis

from .helpers import RECORD_TIME, load_documents


def _records() -> list:
    records = []
    for source, name in [
        ("ocpi", "ocpi_location_messy.json"),
        ("ocpi", "ocpi_patches.jsonl"),
        ("ocm", "ocm_pois.json"),
        ("here", "here_stations.json"),
        ("edrv", "edrv_objects.jsonl"),
    ]:
        for document in load_documents(name):
            with contextlib.suppress(Rejection):  # rejected documents give no records
                records += normalize_document(source, document, NormalizeContext(record_time=RECORD_TIME)).records
    for entry in load_documents("ocpp_status_notifications.jsonl"):
        key = entry.get("key")
        ctx = NormalizeContext(record_time=RECORD_TIME, key=key and key.encode())
        with contextlib.suppress(Rejection):
            records += normalize_document("ocpp", entry["payload"], ctx).records
    for entry in make_log(evse_count=60, records=2500, seed=13):
        key = entry.get("key")
        ctx = NormalizeContext(record_time=from_millis(entry["timestamp"]), key=key and key.encode())
        records += normalize_document(entry["source"], entry["payload"], ctx).records
    return records


def _fold(states: dict[str, EvseState], record, policy: Policy) -> tuple:
    evse = states.get(record.evseUid)
    if evse is None:
        evse = states[record.evseUid] = new_evse(record)
    outcome = apply_record(evse, record, policy)
    return (
        outcome.counters,
        outcome.evse_changed,
        [avro.encode("ConnectorChange", change_record(change)) for change in outcome.changes],
        [avro.encode("EvseAvailabilityWindow", window) for window in outcome.closed_windows],
        avro.encode("EvseAvailability", availability(evse, 1_772_400_000_000, policy)),
        orjson.dumps(evse.to_json()),
    )


def test_the_object_and_its_decoded_bytes_fold_identically() -> None:
    records = _records()
    assert len(records) > 4000 and {r.source for r in records} == {"ocpi", "ocm", "here", "edrv", "ocpp"}
    policy = Policy(window_ms=60_000)
    direct: dict[str, EvseState] = {}
    decoded: dict[str, EvseState] = {}
    for record in records:
        round_trip = construct_status(avro.decode("ConnectorStatus", avro.encode("ConnectorStatus", record.__dict__)))
        assert _fold(direct, record, policy) == _fold(decoded, round_trip, policy), record.connectorUid
    assert orjson.dumps({u: e.to_json() for u, e in direct.items()}) == orjson.dumps(
        {u: e.to_json() for u, e in decoded.items()}
    )
    # and a state written by one path restores to the same state through the changelog
    for uid, evse in direct.items():
        restored = EvseState.from_json(orjson.loads(orjson.dumps(evse.to_json())))
        assert orjson.dumps(restored.to_json()) == orjson.dumps(decoded[uid].to_json())


def test_handoff_gives_back_only_the_exact_bytes_it_was_given() -> None:
    handoff = Handoff(limit=3)
    handoff.put(0, 10, [(b"a", "record-a")])  # partition not open: not kept
    assert handoff.take(0, 10, b"a") is None
    handoff.open(0)
    handoff.put(0, 10, [(b"a", "record-a"), (b"b", "record-b")])
    assert handoff.take(0, 10, b"a") == "record-a"
    assert handoff.take(0, 11, b"other bytes") is None  # not what was produced there: decode
    assert handoff.take(0, 11, b"b") is None  # taken (and dropped) once
    handoff.put(0, 20, [(b"x", 1), (b"y", 2), (b"z", 3), (b"w", 4)])  # over the limit: nothing kept
    assert handoff.size == 0 and handoff.take(0, 20, b"x") is None
    handoff.put(0, 30, [(b"x", 1)])
    handoff.close(0)  # revoked: forgotten
    assert handoff.size == 0 and handoff.take(0, 30, b"x") is None


async def test_stage_one_holds_back_only_while_stage_two_drains_the_handoff() -> None:
    """Memory stays bounded on a backlog: stage 1 waits at half the limit until stage 2 has
    taken the handoff down to a quarter; when nothing is taken it does not wait for ever."""
    import asyncio

    handoff = Handoff(limit=8)
    handoff.open(0)
    handoff.put(0, 0, [(b"%d" % n, n) for n in range(3)])
    await asyncio.wait_for(handoff.wait_for_room(), 0.05)  # below half: no wait at all
    assert handoff.waits == 0
    handoff.put(0, 3, [(b"%d" % n, n) for n in range(3, 6)])  # 6 waiting >= 4
    waiter = asyncio.create_task(handoff.wait_for_room(patience=5))
    for offset in range(3):
        await asyncio.sleep(0.01)
        assert not waiter.done()  # 6, 5, 4 waiting... stage 1 still holds back
        assert handoff.take(0, offset, b"%d" % offset) == offset
    await asyncio.sleep(0.01)
    assert not waiter.done()  # 3 waiting: above a quarter (2)
    handoff.take(0, 3, b"3")
    await asyncio.wait_for(waiter, 1)  # 2 waiting: room
    assert handoff.waits == 1
    handoff.put(0, 10, [(b"x", 1), (b"y", 2), (b"z", 3)])  # 5 waiting, and nobody takes them
    started = asyncio.get_running_loop().time()
    await handoff.wait_for_room(patience=0.05)
    assert 0.04 <= asyncio.get_running_loop().time() - started < 1 and handoff.size == 5


@pytest.mark.parametrize("field", ["scope", "snapshotConnectorUids", "eventTimeIssue"])
def test_schema_defaults_are_written_for_absent_fields(field: str) -> None:
    """A record dict without a defaulted field encodes like fastavro: the schema default."""
    import io

    import fastavro

    record = dict(_records()[0].__dict__)
    record.pop(field)
    ours = avro.encode("ConnectorStatus", record)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(avro.schema("ConnectorStatus")), record)
    assert ours == buffer.getvalue()
