from datetime import UTC, datetime

from streams.models import ConnectorFormat, ConnectorStandard, EventTimeIssue, PowerType, Scope, Status

from .helpers import RECORD_TIME, run, run_fixture


def test_location_envelope_yields_one_record_per_connector() -> None:
    out = run_fixture("ocpi", "ocpi_location_messy.json")
    assert sorted(out.records) == [
        "ocpi:NL:PLG:E1#1",
        "ocpi:NL:PLG:E1#2",
        "ocpi:NL:PLG:E2#1",
        "ocpi:NL:PLG:E3#1",
        "ocpi:NL:PLG:E5#*",
    ]
    assert out.kinds() == ["unknown_status"]
    assert out.rejections[0][1].path == "data[0].evses[3]"


def test_messy_values_are_normalized() -> None:
    out = run_fixture("ocpi", "ocpi_location_messy.json")
    c1, c2 = out.records["ocpi:NL:PLG:E1#1"], out.records["ocpi:NL:PLG:E1#2"]
    assert (c1.status, c1.rawStatus) == (Status.CHARGING, "CHARGING")
    assert c1.evseUid == "ocpi:NL:PLG:E1" and c1.locationId == "ocpi:NL:PLG:LOC-A"
    assert (c1.standard, c1.format, c1.powerType) == (
        ConnectorStandard.IEC_62196_T2_COMBO,
        ConnectorFormat.CABLE,
        PowerType.DC,
    )
    assert (c1.maxPowerKw, c1.voltage, c1.amperage, c1.powerClass) == (100.0, 500, 200, 4)
    assert c1.eventTime == datetime(2026, 3, 1, 9, 29, tzinfo=UTC)  # connector time wins
    assert (c1.reliability, c1.uptime) == (97.5, 99.1)
    assert (c1.latitude, c1.longitude, c1.locationName, c1.operatorName) == (
        52.0907,
        5.1214,
        "Plugstream Depot",
        "Plugstream Test CPO",
    )
    # lower-case spellings; power derived from 230 V x 32 A x 3 phases
    assert (c2.standard, c2.format, c2.powerType) == (
        ConnectorStandard.IEC_62196_T2,
        ConnectorFormat.SOCKET,
        PowerType.AC_3_PHASE,
    )
    assert c2.maxPowerKw == 22.08 and c2.powerClass == 3
    assert c2.eventTime == datetime(2026, 3, 1, 9, 30, 0, 123000, tzinfo=UTC)  # EVSE time, no zone = UTC
    assert c1.snapshotConnectorUids == ["ocpi:NL:PLG:E1#1", "ocpi:NL:PLG:E1#2"]


def test_vendor_flags_wrong_case_and_untrusted_time() -> None:
    out = run_fixture("ocpi", "ocpi_location_messy.json")
    e2 = out.records["ocpi:NL:PLG:E2#1"]
    assert (e2.status, e2.rawStatus) == (Status.INOPERATIVE, "AVAILABLE (is_enabled=false)")
    assert e2.standard is ConnectorStandard.IEC_60309_2_three_32
    assert e2.maxPowerKw == 22.0  # "22" in a W field is kW
    assert (e2.eventTime, e2.eventTimeIssue) == (RECORD_TIME, EventTimeIssue.BEFORE_2000)
    e3 = out.records["ocpi:NL:PLG:E3#1"]
    assert e3.status is Status.UNKNOWN and e3.standard is ConnectorStandard.GBT_DC
    assert e3.eventTime == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # +0100 offset


def test_empty_connector_list_is_an_evse_scope_snapshot() -> None:
    e5 = run_fixture("ocpi", "ocpi_location_messy.json").records["ocpi:NL:PLG:E5#*"]
    assert (e5.scope, e5.status, e5.snapshotConnectorUids) == (Scope.EVSE, Status.OUTOFORDER, [])


def test_patch_bodies() -> None:
    out = run_fixture("ocpi", "ocpi_patches.jsonl")
    evse = out.records["ocpi:NL:PLG:E1#*"]
    assert (evse.scope, evse.status, evse.snapshotConnectorUids) == (Scope.EVSE, Status.AVAILABLE, None)
    conn = out.records["ocpi:NL:PLG:E1#2"]
    assert (conn.scope, conn.status, conn.snapshotConnectorUids) == (Scope.CONNECTOR, Status.RESERVED, None)
    assert out.skipped == {"no_status": 1}  # tariff-only PATCH
    assert out.kinds() == ["missing_id"]  # status PATCH without any uid
    assert out.records["ocpi:E9#*"].status is Status.REMOVED


def test_bad_connector_makes_snapshot_partial() -> None:
    from .helpers import run

    doc = {"uid": "X", "status": "AVAILABLE", "connectors": [{"id": "1"}, {"standard": "IEC_62196_T2"}, "junk"]}
    out = run("ocpi", [doc])
    assert list(out.records) == ["ocpi:X#1"]
    assert out.records["ocpi:X#1"].snapshotConnectorUids is None
    assert out.kinds() == ["missing_id", "not_an_object"]


# --- ids from the record key / headers (OCPI pushes carry them in the URL path) -----------------

STATUS_PATCH = {"status": "CHARGING", "last_updated": "2026-03-01T09:48:00Z"}


def test_patch_without_ids_takes_them_from_the_record_key_path() -> None:
    for key in (
        "NL/PLG/LOC-A/E1",
        "/locations/NL/PLG/LOC-A/E1",
        "https://cpo.example/ocpi/2.2.1/locations/NL/PLG/LOC-A/E1",
    ):
        out = run("ocpi", [STATUS_PATCH], keys=[key])
        record = out.records["ocpi:NL:PLG:E1#*"]
        # the same EVSE the full objects name (tests above: ocpi:NL:PLG:E1)
        assert (record.evseUid, record.scope, record.status) == ("ocpi:NL:PLG:E1", Scope.EVSE, Status.CHARGING)
        assert record.locationId == "ocpi:NL:PLG:LOC-A"


def test_connector_path_makes_a_connector_update() -> None:
    out = run("ocpi", [{"status": "RESERVED", "last_updated": "2026-03-01T09:48:00Z"}], keys=["NL/PLG/LOC-A/E1/2"])
    assert list(out.records) == ["ocpi:NL:PLG:E1#2"]
    assert out.records["ocpi:NL:PLG:E1#2"].connectorId == "2"
    # a Connector object pushed there (no status in OCPI 2.2.1) carries no status change
    assert run("ocpi", [{"id": "2", "standard": "IEC_62196_T2"}], keys=["NL/PLG/LOC-A/E1/2"]).skipped == {
        "no_status": 1
    }


def test_ids_from_headers() -> None:
    headers = {"ocpi-country-code": "NL", "ocpi-party-id": "PLG", "ocpi-location-id": "LOC-A", "ocpi-evse-uid": "E1"}
    out = run("ocpi", [STATUS_PATCH], headers=[headers])
    assert list(out.records) == ["ocpi:NL:PLG:E1#*"]
    with_connector = run("ocpi", [STATUS_PATCH], headers=[{**headers, "ocpi-connector-id": "1"}])
    assert list(with_connector.records) == ["ocpi:NL:PLG:E1#1"]


def test_body_ids_win_when_they_agree_and_a_conflict_is_invalid_id() -> None:
    body = {"country_code": "NL", "party_id": "PLG", "uid": "E1", **STATUS_PATCH}
    assert list(run("ocpi", [body], keys=["NL/PLG/LOC-A/E1"]).records) == ["ocpi:NL:PLG:E1#*"]
    conflict = run("ocpi", [body], keys=["NL/PLG/LOC-A/E2"])
    assert conflict.kinds() == ["invalid_id"] and "conflicts" in conflict.rejections[0][1].message
    assert run("ocpi", [body], headers=[{"ocpi-party-id": "XYZ"}]).kinds() == ["invalid_id"]


def test_location_push_takes_the_location_path() -> None:
    location = {"evses": [{"uid": "E7", "status": "AVAILABLE", "connectors": [{"id": "1"}]}]}
    out = run("ocpi", [location], keys=["NL/PLG/LOC-B"])
    assert out.records["ocpi:NL:PLG:E7#1"].locationId == "ocpi:NL:PLG:LOC-B"


def test_keys_that_are_not_paths_are_ignored() -> None:
    # replay and simulate key raw records by EVSE ("ocpi:NL:PLG:E1", "sim-3"): not a path
    for key in ("ocpi:NL:PLG:E1", "sim-3", "a/b"):
        assert run("ocpi", [STATUS_PATCH], keys=[key]).kinds() == ["missing_id"]


def test_spring_page_wrapper_is_an_envelope() -> None:
    location = {"country_code": "NL", "party_id": "PLG", "id": "L1", "evses": [{"uid": "E1", "status": "AVAILABLE"}]}
    page = {"content": [location], "pageable": {"pageNumber": 0}, "totalElements": 1, "last": True}
    assert list(run("ocpi", [page]).records) == ["ocpi:NL:PLG:E1#*"]
    assert run("ocpi", [{"content": None}]).skipped == {"empty_envelope": 1}
    assert list(run("ocpi", [{"data": {"content": [location]}}]).records) == ["ocpi:NL:PLG:E1#*"]
