"""Pin every status mapping to DESIGN.md §3, written out independently of the adapters."""

import pytest

from streams.adapters import edrv, here, ocm, ocpi
from streams.adapters.base import Rejection
from streams.models import Status as S


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
