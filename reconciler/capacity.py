"""Cluster capacity: the seed's `calculateMaxDemos` and who fits.

Pure arithmetic over the settings and the profiles of live demos. A demo's
footprint is its profile's ResourceQuota (the most it can request), so a cluster
never promises more than it holds once the production reserve is set aside.
Imports only the model (settings, status phases) and quantity parsing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from reconciler.model import DemoStatus, Phase, Settings
from reconciler.quantity import parse_quantity


@dataclass(frozen=True)
class ProfileFit:
    profile: str
    cpu: Decimal
    memory: Decimal
    max_demos: int
    more: int


@dataclass(frozen=True)
class CapacityReport:
    total_cpu: Decimal
    total_memory: Decimal
    reserved_percent: float
    allocatable_cpu: Decimal
    allocatable_memory: Decimal
    used_cpu: Decimal
    used_memory: Decimal
    live_demos: int
    max_concurrent: int
    profiles: tuple[ProfileFit, ...]

    @property
    def free_cpu(self) -> Decimal:
        return max(self.allocatable_cpu - self.used_cpu, Decimal(0))

    @property
    def free_memory(self) -> Decimal:
        return max(self.allocatable_memory - self.used_memory, Decimal(0))


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _allocatable(
    settings: Settings, total_cpu: Decimal, total_memory: Decimal
) -> tuple[Decimal, Decimal]:
    share = (Decimal(100) - Decimal(str(settings.capacity.reservedForProduction))) / 100
    return total_cpu * share, total_memory * share


def calculate_max_demos(
    settings: Settings,
    profile: str = "small",
    total_cpu: Decimal | None = None,
    total_memory: Decimal | None = None,
) -> int:
    """The seed's calculateMaxDemos: min over CPU, memory and the configured ceiling."""
    cpu_total = (
        total_cpu if total_cpu is not None else parse_quantity(str(settings.capacity.totalCpu))
    )
    mem_total = (
        total_memory
        if total_memory is not None
        else parse_quantity(str(settings.capacity.totalMemory))
    )
    cpu, memory = _allocatable(settings, cpu_total, mem_total)
    p = settings.profiles[profile]
    return min(
        _floor(cpu / p.cpu_cores),
        _floor(memory / p.memory_bytes),
        settings.capacity.maxConcurrentDemos,
    )


def live_profiles(files: Mapping[str, str], statuses: Mapping[str, DemoStatus]) -> list[str]:
    """The profiles holding capacity, by demo id order: what the planner admits against.

    A status is the truth once there is one, as in `plan`: a demo queued
    (`pending`) holds nothing, a demo with any other phase holds its profile even
    when its file is gone or has expired (its namespace is there until teardown).
    A valid file without a status yet counts too: the next cycle creates it, and
    `democtl validate` checks capacity the same way. `files` maps id to profile.
    """
    held = {i: s.profile for i, s in statuses.items() if s.phase != Phase.PENDING}
    waiting = {i: p for i, p in files.items() if i not in statuses}
    return [profile for _, profile in sorted({**waiting, **held}.items())]


def capacity_report(
    settings: Settings,
    live_profiles: Iterable[str],
    total_cpu: Decimal | None = None,
    total_memory: Decimal | None = None,
) -> CapacityReport:
    """Total, used by live demos, free, and how many more of each profile fit."""
    cpu_total = (
        total_cpu if total_cpu is not None else parse_quantity(str(settings.capacity.totalCpu))
    )
    mem_total = (
        total_memory
        if total_memory is not None
        else parse_quantity(str(settings.capacity.totalMemory))
    )
    cpu, memory = _allocatable(settings, cpu_total, mem_total)
    live = [p for p in live_profiles if p in settings.profiles]
    used_cpu = sum((settings.profiles[p].cpu_cores for p in live), Decimal(0))
    used_memory = sum((settings.profiles[p].memory_bytes for p in live), Decimal(0))
    free_cpu = max(cpu - used_cpu, Decimal(0))
    free_memory = max(memory - used_memory, Decimal(0))
    ceiling = settings.capacity.maxConcurrentDemos
    fits = tuple(
        ProfileFit(
            profile=name,
            cpu=p.cpu_cores,
            memory=p.memory_bytes,
            max_demos=calculate_max_demos(settings, name, cpu_total, mem_total),
            more=max(
                min(
                    _floor(free_cpu / p.cpu_cores),
                    _floor(free_memory / p.memory_bytes),
                    ceiling - len(live),
                ),
                0,
            ),
        )
        for name, p in sorted(settings.profiles.items())
    )
    return CapacityReport(
        total_cpu=cpu_total,
        total_memory=mem_total,
        reserved_percent=settings.capacity.reservedForProduction,
        allocatable_cpu=cpu,
        allocatable_memory=memory,
        used_cpu=used_cpu,
        used_memory=used_memory,
        live_demos=len(live),
        max_concurrent=ceiling,
        profiles=fits,
    )


def admit_in_order(settings: Settings, demos: Sequence[tuple[str, str]]) -> list[str]:
    """The ids, in the given order, that fit one after another; the rest wait.

    Strict first-come first-served: once one demo does not fit, no later demo
    jumps the queue, even a smaller one (otherwise a big demo could starve).
    One pass with running totals; decides exactly as `capacity_report(...).more`
    would for the demos admitted so far.
    """
    cpu, memory = _allocatable(
        settings,
        parse_quantity(str(settings.capacity.totalCpu)),
        parse_quantity(str(settings.capacity.totalMemory)),
    )
    ceiling = settings.capacity.maxConcurrentDemos
    used_cpu, used_memory = Decimal(0), Decimal(0)
    admitted: list[str] = []
    for demo_id, profile in demos:
        p = settings.profiles.get(profile)
        if p is None:
            continue
        free_cpu = max(cpu - used_cpu, Decimal(0))
        free_memory = max(memory - used_memory, Decimal(0))
        more = min(
            _floor(free_cpu / p.cpu_cores),
            _floor(free_memory / p.memory_bytes),
            ceiling - len(admitted),
        )
        if more < 1:
            break
        admitted.append(demo_id)
        used_cpu += p.cpu_cores
        used_memory += p.memory_bytes
    return admitted
