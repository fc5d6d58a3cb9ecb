"""Pin every status mapping to DESIGN.md §3, written out independently of the adapters."""

import pytest

from streams.adapters import edrv, here, ocm, ocpi, ocpp
from streams.adapters.base import Rejection
from streams.models import ConnectorFormat as F
from streams.models import ConnectorStandard as CS
from streams.models import Status as S
from streams.values import norm_key


def test_ocpi_table_is_design_table() -> None:
    assert ocpi.STATUS_TABLE == {
        "AVAILABLE": S.AVAILABLE,
        "BLOCKED": S.BLOCKED,
        "CHARGING": S.CHARGING,
        "PREPARING": S.CHARGING,
        "FINISHING": S.CHARGING,
        "INOPERATIVE": S.INOPERATIVE,
        "OUTOFORDER": S.OUTOFORDER,
        "PLANNED": S.PLANNED,
        "REMOVED": S.REMOVED,
        "RESERVED": S.RESERVED,
        "UNKNOWN": S.UNKNOWN,
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CHARGING ", S.CHARGING),
        ("charging", S.CHARGING),
        (" Out_Of_Order", S.OUTOFORDER),
        ("preparing", S.CHARGING),
        ("Finishing", S.CHARGING),
    ],
)
def test_ocpi_matching_ignores_case_and_whitespace(raw: str, expected: S) -> None:
    assert ocpi.map_status(raw, "EVSE") is expected


def test_ocpi_unknown_and_wrong_type_reject() -> None:
    with pytest.raises(Rejection) as info:
        ocpi.map_status("SLEEPING", "EVSE")
    assert info.value.kind == "unknown_status"
    with pytest.raises(Rejection) as info:
        ocpi.map_status(3, "EVSE")
    assert info.value.kind == "wrong_type"


@pytest.mark.parametrize(
    ("flags", "status", "expected"),
    [
        ({"is_enabled": False}, S.AVAILABLE, S.INOPERATIVE),
        ({"is_published": False}, S.CHARGING, S.REMOVED),
        ({"online": False}, S.AVAILABLE, S.UNKNOWN),
        ({"online": False}, S.OUTOFORDER, S.OUTOFORDER),
        ({"online": False, "is_enabled": False}, S.AVAILABLE, S.INOPERATIVE),
        ({"is_published": False, "is_enabled": False}, S.AVAILABLE, S.REMOVED),
        ({"online": True, "is_enabled": True, "is_published": True}, S.RESERVED, S.RESERVED),
    ],
)
def test_omni_flags(flags: dict, status: S, expected: S) -> None:
    assert ocpi.apply_flags(status, "X", flags)[0] is expected


def test_ocpp_enums_are_the_specifications() -> None:
    """The enum members the OCPP tables are keyed on, as the OCPP 1.6 / 2.0.1 schemas list them."""
    assert ocpp.OCPP16_CHARGE_POINT_STATUS == (
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEVSE",
        "SuspendedEV",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    )
    assert ocpp.OCPP201_CONNECTOR_STATUS == ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")


# DESIGN §3, columns "OCPP 1.6 & eDRV" and "OCPP 2.0.1", one row per enum member
OCPP16_EXPECTED = {
    "Available": S.AVAILABLE,
    "Preparing": S.CHARGING,
    "Charging": S.CHARGING,
    "SuspendedEVSE": S.CHARGING,
    "SuspendedEV": S.CHARGING,
    "Finishing": S.CHARGING,
    "Reserved": S.RESERVED,
    "Unavailable": S.INOPERATIVE,
    "Faulted": S.OUTOFORDER,
}
OCPP201_EXPECTED = {
    "Available": S.AVAILABLE,
    "Occupied": S.CHARGING,
    "Reserved": S.RESERVED,
    "Unavailable": S.INOPERATIVE,
    "Faulted": S.OUTOFORDER,
}


@pytest.mark.parametrize("adapter", [ocpp, edrv], ids=["ocpp", "edrv"])
def test_every_ocpp_status_member_is_mapped_as_design_says(adapter) -> None:
    assert set(OCPP16_EXPECTED) == set(ocpp.OCPP16_CHARGE_POINT_STATUS)
    assert set(OCPP201_EXPECTED) == set(ocpp.OCPP201_CONNECTOR_STATUS)
    for member, expected in [*OCPP16_EXPECTED.items(), *OCPP201_EXPECTED.items()]:
        assert adapter.map_status(member) is expected, member
        assert adapter.map_status(f" {member.upper()} ") is expected, member
    assert set(adapter.STATUS_TABLE) == {norm_key(m) for m in (*OCPP16_EXPECTED, *OCPP201_EXPECTED)}


# every ConnectorEnumType member: (standard, format); None where OCPI 2.2.1 has no equivalent
CONNECTOR_ENUM_EXPECTED = {
    "cCCS1": (CS.IEC_62196_T1_COMBO, F.CABLE),
    "cCCS2": (CS.IEC_62196_T2_COMBO, F.CABLE),
    "cG105": (CS.CHADEMO, F.CABLE),
    "cTesla": (CS.TESLA_S, F.CABLE),
    "cType1": (CS.IEC_62196_T1, F.CABLE),
    "cType2": (CS.IEC_62196_T2, F.CABLE),
    "s309-1P-16A": (CS.IEC_60309_2_single_16, F.SOCKET),
    "s309-1P-32A": (None, F.SOCKET),
    "s309-3P-16A": (CS.IEC_60309_2_three_16, F.SOCKET),
    "s309-3P-32A": (CS.IEC_60309_2_three_32, F.SOCKET),
    "sBS1361": (CS.DOMESTIC_G, F.SOCKET),
    "sCEE-7-7": (CS.DOMESTIC_F, F.SOCKET),
    "sType2": (CS.IEC_62196_T2, F.SOCKET),
    "sType3": (CS.IEC_62196_T3C, F.SOCKET),
    "Other1PhMax16A": (None, None),
    "Other1PhOver16A": (None, None),
    "Other3Ph": (None, None),
    "Pan": (CS.PANTOGRAPH_TOP_DOWN, None),
    "wInductive": (None, None),
    "wResonant": (None, None),
    "Undetermined": (None, None),
    "Unknown": (None, None),
    "cChaoJi": (CS.CHAOJI, F.CABLE),
    "cGBT": (CS.GBT_DC, F.CABLE),
    "OppCharge": (CS.PANTOGRAPH_TOP_DOWN, None),
    "cGBT-DC": (CS.GBT_DC, F.CABLE),
    "cLECCS": (None, F.CABLE),
    "cMCS": (None, F.CABLE),
    "cNACS": (CS.TESLA_S, F.CABLE),
    "cUltraChaoJi": (CS.CHAOJI, F.CABLE),
}


def test_every_connector_enum_member_is_mapped() -> None:
    assert set(ocpp.OCPP_CONNECTOR_TYPES) == set(CONNECTOR_ENUM_EXPECTED)
    assert ocpp.CONNECTOR_TYPE_TABLE == CONNECTOR_ENUM_EXPECTED
    for member, (standard, fmt) in CONNECTOR_ENUM_EXPECTED.items():
        attributes = edrv.parse_attributes((member, None, None, None), edrv.Warnings())
        assert (attributes.standard, attributes.format) == (standard, fmt), member


def test_known_types_without_an_ocpi_equivalent_are_not_warnings() -> None:
    warnings = edrv.Warnings()
    assert edrv.parse_attributes(("wInductive", None, None, None), warnings).standard is None
    assert edrv.parse_attributes(("cChaoJi", None, None, None), warnings).standard is CS.CHAOJI
    assert warnings.counts == {}
    edrv.parse_attributes(("Steampunk-3000", None, None, None), warnings)
    assert warnings.counts == {"standard": 1}


def test_edrv_own_type_names() -> None:
    assert edrv.EDRV_CONNECTOR_TYPES == {
        "CCS1": (CS.IEC_62196_T1_COMBO, F.CABLE),
        "CCS2": (CS.IEC_62196_T2_COMBO, F.CABLE),
        "G105": (CS.CHADEMO, F.CABLE),
        "CHADEMO": (CS.CHADEMO, F.CABLE),
        "Tesla": (CS.TESLA_S, F.CABLE),
        "J1772": (CS.IEC_62196_T1, None),
        "Type1": (CS.IEC_62196_T1, None),
        "Type2": (CS.IEC_62196_T2, None),
    }


def test_edrv_table_is_design_table() -> None:
    assert edrv.STATUS_TABLE == {
        "AVAILABLE": S.AVAILABLE,
        "PREPARING": S.CHARGING,
        "CHARGING": S.CHARGING,
        "SUSPENDEDEV": S.CHARGING,
        "SUSPENDEDEVSE": S.CHARGING,
        "FINISHING": S.CHARGING,
        "OCCUPIED": S.CHARGING,
        "RESERVED": S.RESERVED,
        "UNAVAILABLE": S.INOPERATIVE,
        "FAULTED": S.OUTOFORDER,
    }
    assert edrv.map_status("SuspendedEVSE") is S.CHARGING
    assert edrv.map_status("suspendedEV") is S.CHARGING
    assert edrv.map_status("Whatever") is S.UNKNOWN  # "anything else"


def test_ocm_table_is_design_table() -> None:
    assert ocm.STATUS_TABLE == {
        None: (S.UNKNOWN, False),
        0: (S.UNKNOWN, False),
        10: (S.AVAILABLE, True),
        20: (S.CHARGING, True),
        30: (S.INOPERATIVE, False),
        50: (S.AVAILABLE, False),
        75: (S.UNKNOWN, False),
        100: (S.OUTOFORDER, False),
        150: (S.PLANNED, False),
        200: (S.REMOVED, False),
        210: (S.REMOVED, False),
    }
    assert ocm.map_status("20") == (S.CHARGING, True)
    with pytest.raises(Rejection) as info:
        ocm.map_status(999)
    assert info.value.kind == "unknown_status"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AVAILABLE", S.AVAILABLE),
        (2, S.AVAILABLE),
        ("OCCUPIED", S.CHARGING),
        (3, S.CHARGING),
        ("RESERVED", S.RESERVED),
        (8, S.RESERVED),
        ("UNAVAILABLE", S.BLOCKED),
        (5, S.INOPERATIVE),
        (6, S.INOPERATIVE),
        ("OUT_OF_SERVICE", S.OUTOFORDER),
        (4, S.OUTOFORDER),
        (1, S.PLANNED),
        ("UNKNOWN", S.UNKNOWN),
        (0, S.UNKNOWN),
        ("OFFLINE", S.UNKNOWN),
        (7, S.UNKNOWN),
        ("OTHER", S.UNKNOWN),
        (9, S.UNKNOWN),
        ("out of service", S.OUTOFORDER),
    ],
)
def test_here_mapping(raw: object, expected: S) -> None:
    assert here.map_status(raw) is expected


def test_here_counter_order_is_pinned() -> None:
    assert here.COUNTERS == (
        ("numberOfAvailable", S.AVAILABLE),
        ("numberOfInUse", S.CHARGING),
        ("numberOfReserved", S.RESERVED),
        ("numberOfOutOfService", S.OUTOFORDER),
    )
