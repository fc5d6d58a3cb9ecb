import pytest

from streams.models import ConnectorFormat, ConnectorStandard, PowerType, Status

from .helpers import run_fixture


@pytest.fixture(scope="module")
def out():
    return run_fixture("edrv", "edrv_objects.jsonl")


def test_station_with_embedded_connectors(out) -> None:
    c1 = out.records["edrv:c-1"]
    assert (c1.evseUid, c1.status, c1.rawStatus, c1.connectorId) == ("edrv:cs-1", Status.CHARGING, "SuspendedEV", "1")
    assert (c1.standard, c1.format, c1.powerType, c1.maxPowerKw) == (
        ConnectorStandard.IEC_62196_T2_COMBO,
        ConnectorFormat.SOCKET,
        PowerType.AC_3_PHASE,
        11.0,
    )
    assert (c1.latitude, c1.longitude) == (52.331, 4.8656)  # GeoJSON [lon, lat]
    assert c1.snapshotConnectorUids == ["edrv:c-1", "edrv:c-2"]
    c2 = out.records["edrv:c-2"]
    assert (c2.status, c2.standard) == (Status.INOPERATIVE, ConnectorStandard.CHADEMO)  # active=false


def test_virtual_connector_zero_is_skipped_not_rejected(out) -> None:
    assert "edrv:c-0" not in out.records
    assert out.skipped == {"edrv_virtual_connector": 1}


def test_connector_objects(out) -> None:
    c3 = out.records["edrv:c-3"]
    assert (c3.evseUid, c3.status, c3.powerType) == ("edrv:cs-1", Status.OUTOFORDER, PowerType.AC_1_PHASE)
    assert out.records["edrv:c-4"].evseUid == "edrv:cs-2"
    assert out.records["edrv:c-4"].status is Status.UNKNOWN  # anything else
    assert out.records["edrv:c-6"].status is Status.UNKNOWN  # station offline
    assert out.kinds() == []


def test_connector_object_naming_no_station_is_its_own_evse(out) -> None:
    """DESIGN §2: evseUid = edrv:<_id>, the same string as its connectorUid, and a warning."""
    c5 = out.records["edrv:c-5"]
    assert c5.evseUid == c5.connectorUid == "edrv:c-5"
    assert out.warnings["edrv_connector_without_station"] == 1
