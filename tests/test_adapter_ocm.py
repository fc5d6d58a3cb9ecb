from datetime import UTC, datetime

import pytest

from streams.models import ConnectorFormat, ConnectorStandard, EventTimeSource, PowerType, Status

from .helpers import run_fixture


@pytest.fixture(scope="module")
def out():
    return run_fixture("ocm", "ocm_pois.json")


def test_quantity_expands_and_ids_are_namespaced(out) -> None:
    assert {"ocm:1001#1", "ocm:1001#2", "ocm:1002", "ocm:1003", "ocm:1004"} <= set(out.records)
    assert out.records["ocm:1001#1"].evseUid == "ocm:900001"


def test_status_live_and_power_rules(out) -> None:
    live = out.records["ocm:1001#2"]
    assert (live.status, live.live, live.rawStatus) == (Status.AVAILABLE, True, "10")
    assert (live.standard, live.format, live.powerType, live.maxPowerKw) == (
        ConnectorStandard.IEC_62196_T2_COMBO,
        ConnectorFormat.CABLE,
        PowerType.DC,
        50.0,
    )
    tethered = out.records["ocm:1002"]
    assert (tethered.status, tethered.live, tethered.maxPowerKw) == (Status.CHARGING, True, 22.0)  # >1000 = W
    assert (tethered.standard, tethered.format) == (ConnectorStandard.IEC_62196_T2, ConnectorFormat.CABLE)
    inherited = out.records["ocm:1003"]  # no StatusTypeID: inherits the POI's 50, curated
    assert (inherited.status, inherited.live) == (Status.AVAILABLE, False)
    assert inherited.maxPowerKw == pytest.approx(22.17, abs=0.01)  # 32 A x 400 V x sqrt(3)
    verbose = out.records["ocm:1004"]
    assert (verbose.status, verbose.maxPowerKw) == (Status.OUTOFORDER, None)
    assert out.warnings.get("maxPowerKw") == 1  # "fast"


def test_status_types_and_time(out) -> None:
    got = {uid: out.records[uid].status for uid in out.records if uid.startswith("ocm:200")}
    assert got == {
        "ocm:2001": Status.UNKNOWN,
        "ocm:2002": Status.UNKNOWN,
        "ocm:2003": Status.REMOVED,
        "ocm:2004": Status.PLANNED,
        "ocm:2005": Status.INOPERATIVE,
        "ocm:2006": Status.UNKNOWN,
    }
    rec = out.records["ocm:2001"]
    assert rec.eventTime == datetime(2026, 2, 2, tzinfo=UTC) and rec.eventTimeSource is EventTimeSource.SOURCE
    assert rec.latitude is None  # 0,0 is OCM's "no position"
    assert rec.standard is ConnectorStandard.DOMESTIC_F


def test_rejections(out) -> None:
    assert out.kinds() == ["absurd_value", "invalid_id", "unknown_status"]
