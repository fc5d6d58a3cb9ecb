from datetime import UTC, datetime

import pytest

from streams.models import ConnectorFormat, ConnectorStandard, PowerType, Status

from .helpers import run, run_fixture


@pytest.fixture(scope="module")
def out():
    return run_fixture("here", "here_stations.json")


def test_connector_statuses_are_used_when_present(out) -> None:
    a1 = out.records["here:st-live#g1.A1"]
    assert (a1.status, a1.live, a1.rawStatus) == (Status.CHARGING, True, "OCCUPIED")
    assert a1.eventTime == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # +0100
    assert (a1.standard, a1.format, a1.powerType, a1.maxPowerKw, a1.powerClass) == (
        ConnectorStandard.IEC_62196_T2_COMBO,
        ConnectorFormat.CABLE,
        PowerType.DC,
        150.0,
        4,
    )
    assert (a1.voltage, a1.amperage) == (920, 350)
    assert out.records["here:st-live#g1.A2"].status is Status.OUTOFORDER


def test_counts_are_synthesized_into_connectors(out) -> None:
    group = sorted((uid, r.status) for uid, r in out.records.items() if uid.startswith("here:st-live#g2"))
    assert group == [
        ("here:st-live#g2.1", Status.AVAILABLE),
        ("here:st-live#g2.2", Status.AVAILABLE),
        ("here:st-live#g2.3", Status.CHARGING),
        ("here:st-live#g2.4", Status.UNKNOWN),
    ]
    g2 = out.records["here:st-live#g2.1"]
    assert (g2.powerType, g2.voltage, g2.amperage, g2.format) == (PowerType.AC_3_PHASE, 480, 32, ConnectorFormat.SOCKET)
    assert g2.eventTime == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    # the station is one snapshot: its first record lists all six connectors, the others none
    first = out.records["here:st-live#g1.A1"]
    assert len(first.snapshotConnectorUids) == 6 and g2.snapshotConnectorUids is None


def test_static_station_is_unknown_not_live(out) -> None:
    rec = out.records["here:st-static#g1.2"]
    assert (rec.status, rec.live, rec.standard, rec.powerClass) == (
        Status.UNKNOWN,
        False,
        ConnectorStandard.IEC_62196_T1,
        2,
    )
    assert (rec.voltage, rec.amperage) == (120, 80)


def test_impossible_counts_reject(out) -> None:
    assert out.kinds() == ["absurd_value"]


def test_plain_lists_and_v3_groups() -> None:
    station = {"id": "v3", "connectorGroups": [{"standard": "CHADEMO", "maxPower": 100000, "connectorCount": 2}]}
    got = run("here", [station]).records
    assert sorted(got) == ["here:v3#g1.1", "here:v3#g1.2"]
    assert got["here:v3#g1.1"].maxPowerKw == 100.0 and got["here:v3#g1.1"].standard is ConnectorStandard.CHADEMO
    plain = {
        "id": "p",
        "connectors": [{"chargingPoint": {"numberOfConnectors": 1, "numberOfReserved": 1}, "connectorStatuses": []}],
    }
    assert run("here", [plain]).records["here:p#g1.1"].status is Status.RESERVED
