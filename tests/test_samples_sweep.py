"""Sweep the real public payloads in ../shared/samples through their adapters.

Skipped (with the reason) when the folder is absent, e.g. on a user's machine; set
PLUGSTREAM_SAMPLES to point elsewhere.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from streams.adapters import NormalizeContext, Rejection, normalize_bytes
from streams.models import Status

SAMPLES = Path(os.environ.get("PLUGSTREAM_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "samples"))
FOLDERS = {"ocpi": "ocpi", "ocm": "ocm", "here": "here", "edrv": "ocpp/vendor_edrv", "ocpp": "ocpp/ocpp[12][06]*"}
#: StatusNotifications name no charge point: on Kafka that is the record key (DESIGN §2).
KEYS = {"ocpp": b"CP-SAMPLE"}
RECORD_TIME = datetime(2026, 11, 1, tzinfo=UTC)

pytestmark = [
    pytest.mark.samples,
    pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"shared samples not found at {SAMPLES}"),
]


def _files(source: str) -> list[Path]:
    if not SAMPLES.is_dir():
        return []
    return sorted(path for folder in SAMPLES.glob(FOLDERS[source]) for path in folder.rglob("*.json"))


def _run(source: str, path: Path, key: bytes | None = None):
    ctx = NormalizeContext(record_time=RECORD_TIME, key=key or KEYS.get(source))
    try:
        return normalize_bytes(source, path.read_bytes(), ctx), None
    except Rejection as rejection:
        return None, rejection


ALL = [(source, path) for source in FOLDERS for path in _files(source)]


@pytest.mark.parametrize(("source", "path"), ALL, ids=[p.name for _, p in ALL])
def test_every_sample_is_handled(source: str, path: Path) -> None:
    """No unexpected exception: records, or a typed rejection with a stable kind."""
    result, rejection = _run(source, path)
    if rejection is not None:
        assert rejection.kind in Rejection.KINDS
        return
    for record in result.records:
        assert record.connectorUid.startswith(f"{source}:")
        assert record.eventTime <= RECORD_TIME.replace(minute=5)


def _count_connectors(location_doc) -> int:
    locations = location_doc["data"] if isinstance(location_doc, dict) else location_doc
    return sum(len(e.get("connectors") or []) for loc in locations for e in loc.get("evses") or [])


@pytest.mark.parametrize("path", [p for p in _files("ocpi") if "real_feeds" in str(p)], ids=lambda p: p.name)
def test_operator_feeds_yield_one_record_per_connector(path: Path) -> None:
    import orjson

    result, rejection = _run("ocpi", path)
    assert rejection is None
    doc = orjson.loads(path.read_bytes())
    connector_records = [r for r in result.records if r.scope == "CONNECTOR"]
    # every listed connector is a record, except those inside a rejected EVSE
    assert len(connector_records) <= _count_connectors(doc)
    if not result.rejections:
        assert len(connector_records) == _count_connectors(doc)


def test_powergo_trailing_space_and_lowercase() -> None:
    result, _ = _run("ocpi", SAMPLES / "ocpi/real_feeds/ocpi22_powergo_locations_sample.json")
    statuses = Counter(r.status for r in result.records)
    assert statuses[Status.CHARGING] >= 1
    assert any(r.rawStatus == "CHARGING" for r in result.records)  # "CHARGING " trimmed
    assert Counter(r.format for r in result.records if r.scope == "CONNECTOR") == {"CABLE": 10, "SOCKET": 24, None: 8}
    assert {r.powerType for r in result.records} - {None} <= {"AC_3_PHASE", "DC", "AC_1_PHASE"}


def test_sitronics_dotnet_min_date_falls_back_to_record_time() -> None:
    result, _ = _run("ocpi", SAMPLES / "ocpi/real_feeds/ocpi221_sitronics_locations_sample.json")
    assert any(r.eventTimeIssue == "BEFORE_2000" and r.eventTime == RECORD_TIME for r in result.records)


def test_voltrelli_camelcase_keys() -> None:
    result, _ = _run("ocpi", SAMPLES / "ocpi/real_feeds/ocpi_nonstandard_camelcase_voltrelli_locations_sample.json")
    assert result.records and all(r.eventTimeSource == "SOURCE" for r in result.records)
    assert {r.powerType for r in result.records} == {"DC"}  # read from camelCase powerType


def test_itcharge_wrong_case_standard() -> None:
    result, _ = _run("ocpi", SAMPLES / "ocpi/real_feeds/ocpi221_itcharge_locations_sample.json")
    assert any(r.standard == "IEC_60309_2_three_32" for r in result.records)


def test_ocm_lists_and_edge_cases() -> None:
    london, _ = _run("ocm", SAMPLES / "ocm/ocm_poi_list_london_2024_compact.json")
    assert len({r.evseUid for r in london.records}) > 50
    zero, _ = _run("ocm", SAMPLES / "ocm/ocm_poi_example_5_zero_connections.json")
    assert zero.records == [] and zero.skipped == {"poi_without_connections": 1}
    _, template = _run("ocm", SAMPLES / "ocm/ocm_poi_template_mongo_export.json")
    assert template is not None and template.kind == "invalid_id"


def test_edrv_samples() -> None:
    station, _ = _run("edrv", SAMPLES / "ocpp/vendor_edrv/edrv_chargestation_object_v1.1_embedded_connectors.json")
    assert [(r.status, r.rawStatus) for r in station.records] == [(Status.CHARGING, "Preparing")]
    connector, _ = _run("edrv", SAMPLES / "ocpp/vendor_edrv/edrv_connector_object_v1.1_with_rate.json")
    assert connector.records[0].evseUid == "edrv:5eafcdae9e7760a2646be430"
    # the canonical v1.0 example names no charge station: it is its own EVSE (DESIGN §2)
    documented, rejection = _run("edrv", SAMPLES / "ocpp/vendor_edrv/edrv_connector_object_v1.0.json")
    assert rejection is None and len(documented.records) == 1
    record = documented.records[0]
    assert record.evseUid == record.connectorUid == "edrv:5eafcdaf9e7760a2646be432"
    assert (record.status, record.standard, record.format, record.maxPowerKw) == (
        Status.AVAILABLE,
        "IEC_62196_T2",
        "CABLE",
        7.2,
    )


def test_every_ocpp_status_notification_gives_its_record() -> None:
    for path in _files("ocpp"):
        result, rejection = _run("ocpp", path)
        assert rejection is None and not result.rejections, path.name
        frames = orjson.loads(path.read_bytes())
        expected = len(frames) if isinstance(frames, list) else 1
        assert len(result.records) == expected, path.name
        for record in result.records:
            assert record.evseUid.startswith("ocpp:CP-SAMPLE")


def test_ocpp_samples_as_a_user_reads_them() -> None:
    alfen, _ = _run("ocpp", _sample("ocpp16_status_notification_01"))
    whole = alfen.records[0]
    assert (whole.scope, whole.evseUid, whole.status, whole.rawStatus) == (
        "CHARGE_POINT",
        "ocpp:CP-SAMPLE",
        Status.OUTOFORDER,
        "Faulted (errorCode=OtherError)",
    )
    epoch, _ = _run("ocpp", _sample("ocpp16_status_notification_10"))
    zero, _ = _run("ocpp", _sample("ocpp16_status_notification_11"))
    assert epoch.records[0].eventTimeIssue == zero.records[0].eventTimeIssue == "BEFORE_2000"
    occupied, _ = _run("ocpp", _sample("ocpp201_status_notification_03"))
    assert (occupied.records[0].connectorUid, occupied.records[0].status) == ("ocpp:CP-SAMPLE:6#6", Status.CHARGING)
    station, _ = _run("ocpp", _sample("ocpp201_status_notification_02"))
    assert station.records[0].scope == "CHARGE_POINT"


def _sample(prefix: str) -> Path:
    return next(path for path in _files("ocpp") if path.name.startswith(prefix))


def test_ocpi_patch_examples_need_their_url_path() -> None:
    """The spec's PATCH bodies carry no ids (they are in the URL): without a key they are
    rejected with a message saying so; with the path as the record key they apply."""
    folder = SAMPLES / "ocpi/spec_2.2.1"
    status_patch = folder / "ocpi221_location_patch_example_status.json"
    _, rejection = _run("ocpi", status_patch)
    assert rejection is not None and rejection.kind == "missing_id" and "record key" in rejection.message
    keyed, _ = _run("ocpi", status_patch, key=b"/locations/BE/BEC/LOC1/3256")
    assert [(r.evseUid, r.scope) for r in keyed.records] == [("ocpi:BE:BEC:3256", "EVSE")]
    removed, _ = _run("ocpi", folder / "ocpi221_location_patch_example_remove_evse.json", key=b"BE/BEC/LOC1/3256")
    assert [(r.evseUid, r.status) for r in removed.records] == [("ocpi:BE:BEC:3256", Status.REMOVED)]
    renamed, _ = _run("ocpi", folder / "ocpi221_location_patch_example_location.json", key=b"BE/BEC/LOC1")
    assert renamed.records == [] and renamed.skipped == {"no_status": 1}  # a name change, no status


def test_here_reconstructed_station() -> None:
    result, _ = _run(
        "here", SAMPLES / "here/reconstructed/here_v2_stations_response_docs_example_reconstructed_partial.json"
    )
    assert len(result.records) == 2  # numberOfConnectors 2, no dynamic data
    assert all(r.status == Status.UNKNOWN and r.live is False for r in result.records)
    assert all(r.standard == "IEC_62196_T2" and r.maxPowerKw == 22.08 for r in result.records)
