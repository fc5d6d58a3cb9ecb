"""Value coercion and the attribute vocabularies shared by all adapters.

Every lookup is keyed by :func:`norm_key`, so ``"ac_3_phase"``, ``"AC_3_Phase"`` and
``"AC 3 phase"`` all meet the same entry (DESIGN §3: case- and whitespace-insensitive).
Secondary values that cannot be read become ``None`` and bump a warning counter in the
caller; they never reject a record.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from .vocabulary import ConnectorFormat, ConnectorStandard, PowerType

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")

#: Limits beyond which a secondary number is treated as unreadable (absurd), not as data.
MAX_POWER_KW = 5_000.0
MAX_VOLTAGE = 2_000
MAX_AMPERAGE = 3_000


@lru_cache(maxsize=4096)
def norm_key(text: str) -> str:
    """Upper-case and drop everything but letters and digits: the lookup key for enums."""
    return _NON_ALNUM.sub("", text).upper()


def clean_str(value: Any, limit: int = 256) -> str | None:
    """A usable identifier/label: non-empty text (numbers are accepted as text), trimmed."""
    if value.__class__ is str:  # the common case first: this runs several times per connector
        value = value.strip()
        return value if value and len(value) <= limit else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    if isinstance(value, str):
        value = value.strip()
        if value and len(value) <= limit:
            return value
    return None


def to_float(value: Any) -> float | None:
    """A finite number from a number or numeric text; anything else is ``None``."""
    kind = value.__class__
    if kind is float:  # parsed JSON numbers first: the common case
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    if kind is not str:  # text (e.g. OCPI coordinates, "52.09") goes straight to float() below
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float):
            number = float(value)
            return number if math.isfinite(number) else None
        if not isinstance(value, str):
            return None
    try:
        number = float(value)  # float() trims whitespace itself
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def positive(value: float | None, upper: float) -> float | None:
    """Keep values in ``(0, upper]``; zero means "not given" in many feeds."""
    if value is None or value <= 0 or value > upper:
        return None
    return value


def to_int_in(value: Any, upper: int) -> int | None:
    number = positive(to_float(value), upper)
    return None if number is None else round(number)


def coordinate_pair(lat: Any, lon: Any, warnings: Warnings | None = None) -> tuple[float | None, float | None]:
    """A valid (lat, lon) or (None, None); an unreadable pair bumps ``coordinates``."""
    latitude, longitude = to_float(lat), to_float(lon)
    if latitude is not None and longitude is not None and -90 <= latitude <= 90 and -180 <= longitude <= 180:
        return latitude, longitude
    if warnings is not None and (lat not in (None, "") or lon not in (None, "")):
        warnings.bump("coordinates")
    return None, None


def power_class(max_power_kw: float | None) -> int | None:
    """HERE customerChargeLevel thresholds: ≤6, ≤15, ≤50, ≤150, ≤300, >300 kW → 1..6."""
    if max_power_kw is None:
        return None
    for level, ceiling in enumerate((6, 15, 50, 150, 300), start=1):
        if max_power_kw <= ceiling:
            return level
    return 6


# --- OCPI ConnectorType (canonical ``standard``) -------------------------------------------

_STANDARD_BY_KEY: dict[str, ConnectorStandard] = {norm_key(s.value): s for s in ConnectorStandard}
#: Spellings seen in real feeds or vendor docs that are not official OCPI values.
_STANDARD_ALIASES: dict[str, ConnectorStandard] = {
    "TYPE2": ConnectorStandard.IEC_62196_T2,
    "TYPE2OUTLET": ConnectorStandard.IEC_62196_T2,
    "TYPE2SOCKET": ConnectorStandard.IEC_62196_T2,
    "TYPE2CABLE": ConnectorStandard.IEC_62196_T2,
    "MENNEKES": ConnectorStandard.IEC_62196_T2,
    "TYPE1": ConnectorStandard.IEC_62196_T1,
    "J1772": ConnectorStandard.IEC_62196_T1,
    "CCS": ConnectorStandard.IEC_62196_T2_COMBO,
    "CCS2": ConnectorStandard.IEC_62196_T2_COMBO,
    "CCSTYPE2": ConnectorStandard.IEC_62196_T2_COMBO,
    "CCS1": ConnectorStandard.IEC_62196_T1_COMBO,
    "CCSTYPE1": ConnectorStandard.IEC_62196_T1_COMBO,
    "G105": ConnectorStandard.CHADEMO,
    "GBT": ConnectorStandard.GBT_DC,
    "GBTDC": ConnectorStandard.GBT_DC,
    "GBTAC": ConnectorStandard.GBT_AC,
    "SCHUKO": ConnectorStandard.DOMESTIC_F,
    "TESLA": ConnectorStandard.TESLA_S,
    "NACS": ConnectorStandard.TESLA_S,
}


def standard_from_text(value: Any) -> ConnectorStandard | None:
    """OCPI ``standard`` with tolerance for case (``IEC_60309_2_THREE_32``) and aliases
    (``"Type 2 outlet"``, ``"GB/T (DC)"``)."""
    if not isinstance(value, str) or not value.strip():
        return None
    key = norm_key(value)
    return _STANDARD_BY_KEY.get(key) or _STANDARD_ALIASES.get(key)


# --- ConnectorFormat ------------------------------------------------------------------------

_FORMAT_BY_KEY = {
    "SOCKET": ConnectorFormat.SOCKET,
    "CABLE": ConnectorFormat.CABLE,
    "TETHERED": ConnectorFormat.CABLE,
}


def format_from_text(value: Any) -> ConnectorFormat | None:
    if not isinstance(value, str):
        return None
    return _FORMAT_BY_KEY.get(norm_key(value))


# --- PowerType --------------------------------------------------------------------------------

_POWER_TYPE_BY_KEY: dict[str, PowerType] = {norm_key(p.value): p for p in PowerType} | {
    "ACSINGLEPHASE": PowerType.AC_1_PHASE,
    "AC1P": PowerType.AC_1_PHASE,
    "ACTHREEPHASE": PowerType.AC_3_PHASE,
    "AC3P": PowerType.AC_3_PHASE,
    "ACTWOPHASE": PowerType.AC_2_PHASE,
}


def power_type_from_text(value: Any) -> PowerType | None:
    """All three eDRV spellings, OCPI's and lower-case variants (``ac_3_phase``)."""
    if not isinstance(value, str):
        return None
    return _POWER_TYPE_BY_KEY.get(norm_key(value))


class Warnings:
    """Counts secondary fields that could not be read, by field name."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def bump(self, field: str) -> None:
        self.counts[field] = self.counts.get(field, 0) + 1

    def check(self, field: str, raw: Any, parsed: Any) -> Any:
        """Return ``parsed``; count a warning when a raw value was present but unreadable."""
        if parsed is None and raw is not None and raw != "":
            self.bump(field)
        return parsed
