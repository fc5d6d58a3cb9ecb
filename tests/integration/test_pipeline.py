"""The whole pipeline through a real (embedded) Kafka-protocol broker."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest

from streams import avro
from streams.config import Settings
from streams.engines import create_engine
from streams.runner import publish, read_windows, snapshot, with_replay_dead_letters
from streams.topics import CONNECTOR_CHANGES, CONNECTOR_STATUS, DLQ, EVSE_AVAILABILITY, read_to_end

from ..helpers import FIXTURES

pytestmark = pytest.mark.integration
LOG = FIXTURES / "replay_log.jsonl"


async def dead_letters(bootstrap: str) -> list[dict]:
    """Every record on the DLQ topic, decoded."""
    return [avro.decode("DeadLetter", m.value) for ms in (await read_to_end(bootstrap, DLQ)).values() for m in ms]


async def run_log(bootstrap: str, paths: list[Path], partitions: int, engine: str = "native") -> tuple[Any, dict]:
    """The whole pipeline on one broker (engine ``native`` or ``faust``) until every record of
    the logs is processed: the engine and its ``--dump``."""
    pipeline = create_engine(Settings(partitions=partitions), bootstrap, name=engine)
    await pipeline.start()
    try:
        report = await publish(bootstrap, paths, partitions, progress=False)
        await pipeline.wait_processed(report.raw_end_offsets, timeout=60)
        stats = with_replay_dead_letters(pipeline.stats(), report)
        return pipeline, {"evses": pipeline.evses(), "windows": await read_windows(bootstrap), "stats": stats}
    finally:
        await pipeline.stop()


def by_uid(evses: list[dict]) -> dict[str, dict]:
    return {e["evseUid"]: e for e in evses}


async def test_replayed_log_gives_exactly_the_expected_tables(broker, engine: str) -> None:
    _, result = await run_log(broker.bootstrap, [LOG], partitions=3, engine=engine)
    stats = result["stats"]
    assert {k: stats[k] for k in ("accepted", "duplicates", "stale", "skipped", "rejected", "late")} == {
        "accepted": 12,
        "duplicates": 3,
        "stale": 2,
        "skipped": 1,
        "rejected": 4,
        "late": 1,
    }
    assert stats["removedBySnapshot"] == 1
    evses = by_uid(result["evses"])
    assert sorted(evses) == ["edrv:cs1", "here:h1", "ocm:77", "ocpi:NL:PLG:E1"]

    e1 = evses["ocpi:NL:PLG:E1"]
    assert (e1["connectorsTotal"], e1["available"], e1["statusCounts"]["REMOVED"]) == (1, 1, 1)
    assert e1["lastUpdateTimestamp"] == "2026-03-01T10:11:00.000Z"
    assert {c["connectorUid"]: c["status"] for c in e1["connectors"]} == {
        "ocpi:NL:PLG:E1#1": "AVAILABLE",
        "ocpi:NL:PLG:E1#2": "REMOVED",
    }
    assert e1["byStandard"] == {"IEC_62196_T2": {"total": 1, "available": 1}}

    cs1 = evses["edrv:cs1"]
    assert {c["connectorUid"]: c["status"] for c in cs1["connectors"]} == {
        "edrv:c1": "RESERVED",
        "edrv:c2": "AVAILABLE",
    }
    assert cs1["lastUpdateTimestamp"] == "2026-03-01T10:12:00.000Z"  # the late c2 (10:06) never moves it back
    assert (cs1["available"], cs1["connectorsTotal"]) == (1, 2)

    assert evses["ocm:77"]["statusCounts"]["AVAILABLE"] == 2
    h1 = evses["here:h1"]
    assert (h1["available"], h1["statusCounts"]["CHARGING"], h1["lastUpdateTimestamp"]) == (
        1,
        1,
        "2026-03-01T10:05:00.000Z",
    )
    assert all(e["stale"] is False and e["streamTime"] == "2026-03-01T10:13:00.000Z" for e in evses.values())

    windows = {(w["evseUid"], w["windowStart"]): w for w in result["windows"]}
    assert sorted(windows) == [("edrv:cs1", "2026-03-01T10:00:00.000Z"), ("ocpi:NL:PLG:E1", "2026-03-01T10:00:00.000Z")]
    e1w = windows[("ocpi:NL:PLG:E1", "2026-03-01T10:00:00.000Z")]
    assert (e1w["changes"], e1w["available"], e1w["minAvailable"], e1w["maxAvailable"]) == (4, 0, 0, 2)
    assert e1w["availableShare"] == pytest.approx(0.75)
    assert e1w["lastUpdateTimestamp"] == "2026-03-01T10:03:00.000Z"
    cs1w = windows[("edrv:cs1", "2026-03-01T10:00:00.000Z")]
    assert (cs1w["changes"], cs1w["availableShare"]) == (1, 0.0)


async def test_dead_letters_keep_original_bytes_and_offsets(broker, engine: str) -> None:
    await run_log(broker.bootstrap, [LOG], partitions=2, engine=engine)
    letters = await dead_letters(broker.bootstrap)
    kinds = sorted((d["stage"], d["errorKind"]) for d in letters)
    assert kinds == [
        ("normalize", "absurd_value"),
        ("normalize", "malformed_json"),
        ("replay", "malformed_json"),
        ("replay", "unrecognized_document"),
    ]
    broken = next(d for d in letters if d["stage"] == "normalize" and d["errorKind"] == "malformed_json")
    assert broken["payload"] == b"{not json" and broken["topic"] == "raw.ocm" and broken["source"] == "ocm"
    assert broken["offset"] >= 0 and broken["timestamp"] is not None
    line = next(d for d in letters if d["stage"] == "replay" and d["errorKind"] == "malformed_json")
    assert line["payload"] == b"this line is not JSON at all" and line["offset"] == 10


async def test_same_log_same_tables_whatever_the_partition_count(broker, engine: str) -> None:
    from streams.broker import EmbeddedBroker

    _, one = await run_log(broker.bootstrap, [LOG], partitions=1, engine=engine)
    with EmbeddedBroker() as other:
        _, four = await run_log(other.bootstrap, [LOG], partitions=4, engine=engine)
    assert one["evses"] == four["evses"]
    assert one["windows"] == four["windows"]
    assert one["stats"] == four["stats"]


async def test_snapshot_rebuilds_the_dumped_view(broker) -> None:
    _, result = await run_log(broker.bootstrap, [LOG], partitions=3)
    assert (await snapshot(broker.bootstrap))["evses"] == result["evses"]


async def test_outputs_decode_with_the_avsc_files_as_a_plain_consumer_would(broker) -> None:
    await run_log(broker.bootstrap, [LOG], partitions=2)
    seen: dict[str, list] = {}
    for topic, name in [
        (CONNECTOR_STATUS, "ConnectorStatus"),
        (CONNECTOR_CHANGES, "ConnectorChange"),
        (EVSE_AVAILABILITY, "EvseAvailability"),
    ]:
        schema = fastavro.parse_schema(
            orjson.loads((avro.schema_dir() / f"plugstream.{name}.avsc").read_bytes()), named_schemas=_named_types()
        )
        seen[topic] = []
        for messages in (await read_to_end(broker.bootstrap, topic)).values():
            for message in messages:
                value = fastavro.schemaless_reader(io.BytesIO(message.value), schema, None)
                assert message.key.decode() == value["evseUid"]
                seen[topic].append(value)
    assert len(seen[CONNECTOR_STATUS]) == 17  # every canonical record of the log (c0 skipped)
    changes = seen[CONNECTOR_CHANGES]
    assert len(changes) == 13  # 12 accepted + 1 snapshot removal
    removal = next(c for c in changes if c["changeKind"] == "REMOVED_BY_SNAPSHOT")
    assert (removal["connectorUid"], removal["previousStatus"]) == ("ocpi:NL:PLG:E1#2", "AVAILABLE")
    c1 = sorted((c for c in changes if c["connectorUid"] == "edrv:c1"), key=lambda c: c["recordTime"])
    assert [c["status"] for c in c1] == ["CHARGING", "AVAILABLE", "RESERVED"]
    assert {v["evseUid"] for v in seen[EVSE_AVAILABILITY]} == {"edrv:cs1", "here:h1", "ocm:77", "ocpi:NL:PLG:E1"}


def _named_types() -> dict:
    """The shared enum/record files, loaded the way any Avro tool would: by their names."""
    named: dict = {}
    pending = sorted(avro.schema_dir().glob("*.avsc"))
    while pending:  # parse in dependency order
        retry = []
        for path in pending:
            try:
                fastavro.parse_schema(orjson.loads(path.read_bytes()), named_schemas=named)
            except fastavro.schema.UnknownType:
                retry.append(path)
        assert len(retry) < len(pending)
        pending = retry
    return named


async def test_unreadable_connector_status_record_is_dead_lettered_by_the_aggregate_stage(broker, engine: str) -> None:
    """Only stage 1 should write ``connector-status``; anything else there must not stop stage 2."""
    from streams.engine import producer_for
    from streams.topics import ensure_topics, topic_specs

    await ensure_topics(broker.bootstrap, topic_specs("plugstream", 86_400_000), 3)  # not auto-created with 4
    garbage = [b"\xff\x00 definitely not avro", b""]
    async with producer_for(broker.bootstrap) as producer:
        for partition, value in enumerate(garbage):
            await producer.send_and_wait(CONNECTOR_STATUS, value, key=b"intruder", partition=partition)
    _, result = await run_log(broker.bootstrap, [LOG], partitions=3, engine=engine)

    stats = result["stats"]
    assert stats["rejected"] == 4 + len(garbage)  # the log's four bad raw records plus the two intruders
    assert stats["rejectedByKind"]["malformed_avro"] == len(garbage)
    assert sorted(by_uid(result["evses"])) == ["edrv:cs1", "here:h1", "ocm:77", "ocpi:NL:PLG:E1"]
    assert stats["accepted"] == 12  # the valid records behind the garbage were all processed

    letters = await dead_letters(broker.bootstrap)
    intruders = sorted((d for d in letters if d["stage"] == "aggregate"), key=lambda d: d["partition"])
    assert [(d["topic"], d["partition"], d["offset"], d["payload"], d["errorKind"]) for d in intruders] == [
        (CONNECTOR_STATUS, p, 0, value, "malformed_avro") for p, value in enumerate(garbage)
    ]


OCPP_LOG = FIXTURES / "replay_ocpp.jsonl"


async def test_ocpp_and_pushed_ids_end_to_end(broker, engine: str) -> None:
    """OCPP StatusNotifications keyed by charge point, a charge-point-wide update, and OCPI
    pushes whose ids are in the record key / headers, through the whole pipeline."""
    _, result = await run_log(broker.bootstrap, [OCPP_LOG], partitions=3, engine=engine)
    evses = by_uid(result["evses"])
    assert sorted(evses) == ["ocpi:NL:PLG:E9", "ocpp:CP-A:1", "ocpp:CP-A:2", "ocpp:CP-B:1"]

    def statuses(uid: str) -> dict[str, str]:
        return {c["connectorUid"]: c["status"] for c in evses[uid]["connectors"]}

    # connectorId 0 Unavailable (10:02) reached both EVSEs of CP-A; connector 1 came back at 10:03
    assert statuses("ocpp:CP-A:1") == {"ocpp:CP-A:1#1": "AVAILABLE"}
    assert statuses("ocpp:CP-A:2") == {"ocpp:CP-A:2#2": "INOPERATIVE"}
    assert evses["ocpp:CP-A:2"]["lastUpdateTimestamp"] == "2026-03-01T10:02:00.000Z"
    assert evses["ocpp:CP-A:1"]["locationId"] == "ocpp:CP-A"
    # 2.0.1: connectorId 0 of EVSE 1 is the whole EVSE
    assert statuses("ocpp:CP-B:1") == {"ocpp:CP-B:1#1": "OUTOFORDER", "ocpp:CP-B:1#2": "OUTOFORDER"}
    # OCPI: a status PATCH keyed by its URL path, then a connector PATCH named by headers
    assert statuses("ocpi:NL:PLG:E9") == {"ocpi:NL:PLG:E9#1": "CHARGING", "ocpi:NL:PLG:E9#2": "RESERVED"}
    stats = result["stats"]
    assert stats["skippedByReason"] == {"ocpp_other_action": 1}
    assert stats["rejectedByKind"] == {"missing_id": 1}
    assert stats["evseScopeUnmatched"] == 1  # CP-C's connectorId 0: no EVSE of it known yet
    assert stats["accepted"] == 14
    letters = await dead_letters(broker.bootstrap)
    assert [(d["source"], d["errorKind"]) for d in letters] == [("ocpp", "missing_id")]


async def test_ocpp_tables_do_not_depend_on_the_partition_count(broker, engine: str) -> None:
    from streams.broker import EmbeddedBroker

    _, one = await run_log(broker.bootstrap, [OCPP_LOG], partitions=1, engine=engine)
    with EmbeddedBroker() as other:
        _, four = await run_log(other.bootstrap, [OCPP_LOG], partitions=4, engine=engine)
    assert one["evses"] == four["evses"] and one["stats"] == four["stats"]


async def test_both_engines_give_the_same_dump_record_by_record(broker, tmp_path: Path) -> None:
    """DESIGN §7: the same tables, windows and counters under ``native`` and ``faust``."""
    from streams.broker import EmbeddedBroker
    from streams.simulate import make_log

    simulated = tmp_path / "sim.jsonl"
    simulated.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in make_log(evse_count=60, records=900, seed=8)))
    logs = [LOG, OCPP_LOG, simulated]
    _, native = await run_log(broker.bootstrap, logs, partitions=3, engine="native")
    with EmbeddedBroker() as other:
        _, faust = await run_log(other.bootstrap, logs, partitions=3, engine="faust")
    assert len(native["evses"]) > 60 and len(native["windows"]) > 50
    for ours, theirs in zip(native["evses"], faust["evses"], strict=True):
        assert ours == theirs, ours["evseUid"]
    assert native["windows"] == faust["windows"]
    for w in native["windows"]:  # the dump's windows are consistent with themselves
        assert w["minAvailable"] <= w["available"] <= w["maxAvailable"], w
        assert w["availableShare"] != 1.0 or w["minAvailable"] >= 1, w
        assert w["availableShare"] != 0.0 or w["maxAvailable"] == 0, w
    assert native["stats"].pop("engine") == "native" and faust["stats"].pop("engine") == "faust"
    assert native["stats"] == faust["stats"]
