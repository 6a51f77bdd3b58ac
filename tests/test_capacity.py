"""Capacity: the seed's calculateMaxDemos against a hand-computed table."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import capacity
from reconciler.capacity import admit_in_order, calculate_max_demos, capacity_report
from reconciler.cli import cli
from reconciler.model import Phase, Settings
from reconciler.statusfile import status_bytes
from reconciler.workspace import read_settings
from tests.gitrepo import demo_yaml, make_status

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


def _admit_by_report(settings: Settings, demos: list[tuple[str, str]]) -> list[str]:
    """The definition admission must match: rebuild the full report before each demo."""
    admitted: list[str] = []
    live: list[str] = []
    for demo_id, profile in demos:
        if profile not in settings.profiles:
            continue
        fit = next(f for f in capacity_report(settings, live).profiles if f.profile == profile)
        if fit.more < 1:
            break
        admitted.append(demo_id)
        live.append(profile)
    return admitted


def _with_tiny_profile(**capacity: object) -> Settings:
    data = settings_with(**capacity).model_dump(mode="json")
    data["profiles"]["tiny"] = dict(data["profiles"]["small"], cpu="300m", memory="700Mi")
    return Settings.model_validate(data)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(_with_tiny_profile(totalCpu="10", reservedForProduction=0), id="cpu-bound"),
        pytest.param(
            _with_tiny_profile(totalMemory="20Gi", reservedForProduction=15), id="memory-bound"
        ),
        pytest.param(_with_tiny_profile(maxConcurrentDemos=3), id="ceiling-bound"),
        pytest.param(_with_tiny_profile(totalCpu="1"), id="nothing-but-tiny-fits"),
    ],
)
def test_admission_matches_the_report_for_every_short_queue(settings: Settings) -> None:
    profiles = ["small", "load-testing", "tiny", "unknown"]
    for length in range(6):
        for combo in itertools.product(profiles, repeat=length):
            queue = [(f"demo-{i}", p) for i, p in enumerate(combo)]
            assert admit_in_order(settings, queue) == _admit_by_report(settings, queue), combo


def test_admission_does_not_rebuild_the_report_per_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    # the quadratic version called capacity_report once per demo; admission keeps running totals
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("capacity_report called during admission")

    monkeypatch.setattr(capacity, "capacity_report", forbidden)
    settings = settings_with(maxConcurrentDemos=1000, totalCpu="4000", totalMemory="8000Gi")
    queue = [(f"demo-{i}", "small") for i in range(2000)]
    assert len(admit_in_order(settings, queue)) == 1000


# --- `democtl capacity` counts what holds capacity, as the planner does -------------------


def _demo_file(demo_id: str, profile: str) -> str:
    return demo_yaml(demo_id).replace("profile: small", f"profile: {profile}")


def test_capacity_command_counts_live_statuses_not_queued_or_gone_files(tmp_path: Path) -> None:
    (tmp_path / "reconciler.yaml").write_text((PROJECT / "reconciler.yaml").read_text())
    (tmp_path / "demos").mkdir()
    (tmp_path / "status").mkdir()
    files = {"demo-a": "small", "demo-b": "load-testing", "demo-c": "small"}
    for demo_id, profile in files.items():
        (tmp_path / "demos" / f"{demo_id}.yaml").write_text(_demo_file(demo_id, profile))
    statuses = {
        "demo-a": make_status("demo-a", Phase.READY),  # live
        "demo-b": make_status("demo-b", Phase.PENDING).model_copy(
            update={"profile": "load-testing"}
        ),  # queued: holds nothing
        "demo-d": make_status("demo-d", Phase.DESTROYING),  # file gone, namespace still there
    }
    for demo_id, status in statuses.items():
        (tmp_path / "status" / f"{demo_id}.yaml").write_bytes(status_bytes(status))
    (tmp_path / "status" / "demo-c.yaml").write_text("phase: [broken\n")  # counts by its file

    result = CliRunner().invoke(cli, ["capacity", "--repo", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # demo-a (small) + demo-c (small, no usable status yet) + demo-d (small, destroying)
    assert report["used"] == {"cpu": "6", "memory": "12Gi", "demos": 3}
    assert report["free"]["cpu"] == "38800m"  # 44.8 - 6
    assert report["profiles"]["load-testing"]["more"] == 9  # floor(38.8 / 4)
    assert report["profiles"]["small"]["more"] == 17  # the ceiling of 20 less 3 live
