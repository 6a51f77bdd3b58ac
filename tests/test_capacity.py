"""Capacity: the seed's calculateMaxDemos against a hand-computed table."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from reconciler.capacity import admit_in_order, calculate_max_demos, capacity_report
from reconciler.model import Settings
from reconciler.workspace import read_settings

PROJECT = Path(__file__).resolve().parent.parent


def settings_with(**capacity: object) -> Settings:
    base = read_settings(PROJECT).settings
    assert base is not None
    data = base.model_dump(mode="json")
    data["capacity"].update(capacity)
    return Settings.model_validate(data)


# Sample settings: 64 CPU, 256Gi, 30% reserved -> 44.8 CPU and 179.2Gi allocatable.
# small = 2 CPU / 4Gi: by cpu floor(44.8/2)=22, by memory floor(179.2/4)=44, ceiling 20 -> 20
# load-testing = 4 CPU / 8Gi: by cpu floor(44.8/4)=11, by memory 22, ceiling 20 -> 11
@pytest.mark.parametrize(
    "capacity, profile, expected",
    [
        pytest.param({}, "small", 20, id="ceiling-binds-small"),
        pytest.param({}, "load-testing", 11, id="cpu-binds-load-testing"),
        pytest.param({"maxConcurrentDemos": 100}, "small", 22, id="cpu-binds-without-ceiling"),
        pytest.param(
            {"totalMemory": "32Gi", "maxConcurrentDemos": 100}, "small", 5, id="memory-binds"
        ),
        pytest.param(
            {"reservedForProduction": 0, "maxConcurrentDemos": 100}, "small", 32, id="no-reserve"
        ),
        pytest.param({"totalCpu": "1"}, "small", 0, id="nothing-fits"),
    ],
)
def test_calculate_max_demos(capacity: dict[str, object], profile: str, expected: int) -> None:
    assert calculate_max_demos(settings_with(**capacity), profile) == expected


def test_report_counts_live_demos_and_what_more_fits() -> None:
    settings = settings_with()
    report = capacity_report(settings, ["small", "load-testing", "small"])
    assert report.used_cpu == Decimal(8)
    assert report.used_memory == Decimal(16 * 2**30)
    assert report.free_cpu == Decimal("36.8")
    more = {f.profile: f.more for f in report.profiles}
    # small: cpu floor(36.8/2)=18, memory floor(163.2/4)=40, ceiling 20-3=17 -> 17
    # load-testing: cpu floor(36.8/4)=9, memory 20, ceiling 17 -> 9
    assert more == {"small": 17, "load-testing": 9}


def test_admission_is_first_come_first_served() -> None:
    settings = settings_with(totalCpu="10", reservedForProduction=0)
    queue = [
        ("demo-a", "load-testing"),
        ("demo-b", "load-testing"),
        ("demo-c", "load-testing"),
        ("demo-d", "small"),
    ]
    # 10 CPU: two load-testing demos (8), then c does not fit and d must not jump ahead
    assert admit_in_order(settings, queue) == ["demo-a", "demo-b"]
