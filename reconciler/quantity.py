"""Kubernetes resource quantities (`500m`, `2`, `4Gi`) as exact decimals.

Kept here rather than importing the kubernetes client so that the model and the
planner stay free of provider libraries.
"""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<suffix>m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def parse_quantity(text: str) -> Decimal:
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity like 500m, 2, 512Mi or 4Gi")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{text!r} is not a number") from exc
    return number * _SUFFIXES[match["suffix"] or ""]


def format_cpu(cores: Decimal) -> str:
    """Whole cores as `2`, fractions as millicores `1500m`."""
    if cores == cores.to_integral_value():
        return str(int(cores))
    return f"{int(cores * 1000)}m"


def format_memory(num_bytes: Decimal) -> str:
    """The largest binary suffix that divides evenly: `4Gi`, `768Mi`."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = _SUFFIXES[suffix]
        if num_bytes >= unit and num_bytes % unit == 0:
            return f"{int(num_bytes / unit)}{suffix}"
    return str(int(num_bytes))


def display_cpu(cores: Decimal) -> str:
    """Cores for people: `2`, `44.8`, `0.25` (two decimals at most, floored, never overstating)."""
    hundredths = (cores * 100).to_integral_value(rounding=ROUND_FLOOR) / 100
    text = f"{hundredths:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def display_memory(num_bytes: Decimal) -> str:
    """Memory for people: `4Gi`, `179.2Gi`, `512Mi` (binary suffixes, as display_cpu)."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = _SUFFIXES[suffix]
        if num_bytes >= unit:
            return display_cpu(num_bytes / unit) + suffix
    return str(int(num_bytes))
