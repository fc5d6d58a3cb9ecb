"""The .avsc files are the contract: they parse, the models agree, records round-trip."""

from __future__ import annotations

import json

import fastavro
import pytest
from fastavro.validation import validate

from streams import avro
from streams.models import (
    ConnectorChange,
    ConnectorStatus,
    DeadLetter,
    EvseAvailability,
    EvseAvailabilityWindow,
)

from .helpers import run_fixture
from .schema_check import assert_model_agrees

TOP_LEVEL = {
    "ConnectorStatus": ConnectorStatus,
    "ConnectorChange": ConnectorChange,
    "EvseAvailability": EvseAvailability,
    "EvseAvailabilityWindow": EvseAvailabilityWindow,
    "DeadLetter": DeadLetter,
}


def test_every_avsc_parses_standalone_or_via_its_references() -> None:
    files = sorted(avro.schema_dir().glob("*.avsc"))
    assert files, "no schemas found"
    for path in files:
        raw = json.loads(path.read_text())
        assert raw["namespace"] == "plugstream"
        assert path.name == f"plugstream.{raw['name']}.avsc"  # fastavro resolves references by file name
        assert avro.schema(raw["name"])


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_model_agrees_with_schema(name: str) -> None:
    assert_model_agrees(TOP_LEVEL[name], avro.schema(name))


def test_fixture_records_round_trip_exactly() -> None:
    records = []
    for source, fixture in [
        ("ocpi", "ocpi_location_messy.json"),
        ("ocpi", "ocpi_patches.jsonl"),
        ("ocm", "ocm_pois.json"),
        ("here", "here_stations.json"),
        ("edrv", "edrv_objects.jsonl"),
    ]:
        records.extend(run_fixture(source, fixture).records.values())
    assert len(records) > 30
    for record in records:
        as_dict = dict(record.__dict__)
        assert validate(as_dict, avro.schema("ConnectorStatus"), raise_errors=True)
        decoded = avro.decode("ConnectorStatus", avro.encode("ConnectorStatus", as_dict))
        assert ConnectorStatus.model_validate(decoded) == ConnectorStatus.model_validate(as_dict)
        framed = avro.encode("ConnectorStatus", as_dict, schema_id=7)
        assert framed[:5] == b"\x00\x00\x00\x00\x07"
        assert avro.decode("ConnectorStatus", framed, framed=True) == decoded


def test_schema_is_usable_by_a_plain_consumer() -> None:
    """A downstream consumer with only the .avsc file (references expanded) can decode."""
    expanded = fastavro.parse_schema(avro.schema("ConnectorStatus"))
    record = next(iter(run_fixture("edrv", "edrv_objects.jsonl").records.values()))
    payload = avro.encode("ConnectorStatus", dict(record.__dict__))
    import io

    assert fastavro.schemaless_reader(io.BytesIO(payload), expanded, None)["connectorUid"] == record.connectorUid


def test_construct_status_is_model_construct_without_the_cost() -> None:
    """The adapters' record constructor fills pydantic's slots directly; the result must be
    indistinguishable from ``model_construct`` (and validate to the same record)."""
    from streams.models import construct_status

    for record in run_fixture("ocpi", "ocpi_location_messy.json").records.values():
        values = dict(record.__dict__)
        built = construct_status(dict(values))
        reference = ConnectorStatus.model_construct(**values)
        assert built == reference
        assert built.model_fields_set == reference.model_fields_set
        assert (built.__pydantic_extra__, built.__pydantic_private__) == (None, None)
        assert built.model_dump() == reference.model_dump()
        assert ConnectorStatus.model_validate(built.model_dump()) == ConnectorStatus.model_validate(values)


def test_record_field_list_and_vocabulary_are_the_models() -> None:
    """The adapters build records from a field list and enums that do not import pydantic
    (``streams/vocabulary.py``); both must be exactly what the models declare."""
    from streams import models, vocabulary
    from streams.adapters.base import CONNECTOR_STATUS_FIELDS

    assert tuple(ConnectorStatus.model_fields) == CONNECTOR_STATUS_FIELDS
    enums = {name for name in dir(vocabulary) if isinstance(getattr(vocabulary, name), type)}
    enums.discard("StrEnum")
    assert enums and all(getattr(models, name) is getattr(vocabulary, name) for name in enums)
