import pytest

from streams.models import ConnectorFormat as F
from streams.models import ConnectorStandard as CS
from streams.models import PowerType as P
from streams.values import (
    coordinate_pair,
    format_from_text,
    power_class,
    power_type_from_text,
    standard_from_text,
)


@pytest.mark.parametrize(
    ("kw", "klass"),
    [
        (3.7, 1),
        (6, 1),
        (6.01, 2),
        (15, 2),
        (22, 3),
        (50, 3),
        (150, 4),
        (300, 5),
        (300.5, 6),
        (None, None),
    ],
)
def test_power_class_thresholds(kw: float | None, klass: int | None) -> None:
    assert power_class(kw) == klass


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("IEC_62196_T2", CS.IEC_62196_T2),
        ("IEC_60309_2_THREE_32", CS.IEC_60309_2_three_32),
        ("iec_60309_2_single_16", CS.IEC_60309_2_single_16),
        ("Type 2 outlet", CS.IEC_62196_T2),
        ("GB/T (DC)", CS.GBT_DC),
        ("CHAOJI", CS.CHAOJI),
        ("nonsense", None),
        (None, None),
        (7, None),
    ],
)
def test_standard_spellings(raw: object, expected: CS | None) -> None:
    assert standard_from_text(raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ac_3_phase", P.AC_3_PHASE),
        ("AC_3_Phase", P.AC_3_PHASE),
        ("AC Single Phase", P.AC_1_PHASE),
        ("AC_SINGLE_PHASE", P.AC_1_PHASE),
        ("AC Three Phase", P.AC_3_PHASE),
        ("DC", P.DC),
        ("", None),
    ],
)
def test_power_type_spellings(raw: str, expected: P | None) -> None:
    assert power_type_from_text(raw) is expected


def test_format_spellings() -> None:
    assert format_from_text("Socket") is F.SOCKET
    assert format_from_text("cable") is F.CABLE
    assert format_from_text("plug") is None


def test_coordinates_range_checked() -> None:
    assert coordinate_pair("51.04", "3.72") == (51.04, 3.72)
    assert coordinate_pair(95, 3) == (None, None)
    assert coordinate_pair("x", 3) == (None, None)
