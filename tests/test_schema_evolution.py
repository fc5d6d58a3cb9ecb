"""Records written with another version of a schema still decode (DESIGN §6, README "Schemas")."""

from __future__ import annotations

import io

import fastavro
import pytest

from streams import avro

WINDOW = {
    "evseUid": "ocpi:NL:PLG:E1",
    "source": "ocpi",
    "windowStart": 1_772_359_200_000,
    "windowEnd": 1_772_359_500_000,
    "statusCounts": {"AVAILABLE": 1},
    "connectorsTotal": 1,
    "available": 1,
    "minAvailable": 1,
    "maxAvailable": 1,
    "changes": 2,
    "lastUpdateTimestamp": 1_772_359_260_000,
    "availableShare": 0.5,
}


def _older_schema(tmp_path) -> dict:
    """Today's window schema as it was before ``availableShare`` was added (a history file)."""
    import json

    raw = json.loads((avro.schema_dir() / "plugstream.EvseAvailabilityWindow.avsc").read_text())
    raw["fields"] = [f for f in raw["fields"] if f["name"] != "availableShare"]
    path = tmp_path / "plugstream.EvseAvailabilityWindow.1.avsc"
    path.write_text(json.dumps(raw))
    return avro.load_writer_schema(path)


def _write(schema: dict, record: dict) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


@pytest.fixture
def older(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict:
    schema = _older_schema(tmp_path)
    monkeypatch.setattr(avro, "history", lambda name: {avro.fingerprint(schema): schema} if "Window" in name else {})
    return schema


def test_every_record_names_its_writer_schema() -> None:
    ((name, value),) = avro.schema_headers("EvseAvailability")
    assert name == avro.SCHEMA_HEADER and value.decode() == avro.fingerprint(avro.schema("EvseAvailability"))


def test_a_record_from_an_older_schema_is_resolved_with_defaults(older: dict) -> None:
    record = {k: v for k, v in WINDOW.items() if k != "availableShare"}
    payload = _write(older, record)
    header = [(avro.SCHEMA_HEADER, avro.fingerprint(older).encode())]
    decoded = avro.decode_resolved("EvseAvailabilityWindow", payload, header)
    assert decoded["availableShare"] is None  # the new field's default
    assert decoded["changes"] == 2 and decoded["evseUid"] == "ocpi:NL:PLG:E1"
    assert avro.decode_json("EvseAvailabilityWindow", payload, header)["windowStart"] == "2026-03-01T10:00:00.000Z"
    # written before headers existed: today's schema fails on it, the history reads it
    assert avro.decode_resolved("EvseAvailabilityWindow", payload)["availableShare"] is None


def test_todays_records_take_the_fast_path_and_unknown_writers_are_refused(older: dict) -> None:
    payload = avro.encode("EvseAvailabilityWindow", WINDOW)
    decoded = avro.decode_resolved("EvseAvailabilityWindow", payload, avro.schema_headers("EvseAvailabilityWindow"))
    assert decoded["availableShare"] == 0.5
    with pytest.raises(avro.UnknownWriterSchema):
        avro.decode_resolved("EvseAvailabilityWindow", payload, [(avro.SCHEMA_HEADER, b"00000000deadbeef")])


def test_garbage_is_an_error_not_a_wrong_record(older: dict) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any decoder error; never a made-up record
        avro.decode_resolved("EvseAvailabilityWindow", b"\xff\xfe not avro")
