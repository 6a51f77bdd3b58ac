"""Capacity admission and a whole plan over many demos: both should grow linearly.

Run from the repository root: `python benchmarks/bench_admission.py [--demos 2000]`.
Prints the time of `admit_in_order` and of `plan()` at n and 2n demos; with linear
admission the second figure is about twice the first (the quadratic version it
replaced grew fourfold and took seconds at a few thousand demos).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.capacity import admit_in_order  # noqa: E402
from reconciler.model import Demo, Settings  # noqa: E402
from reconciler.plan import Observed, plan  # noqa: E402
from reconciler.validate import LoadedDemo  # noqa: E402
from reconciler.workspace import read_settings  # noqa: E402

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def roomy_settings(n: int) -> Settings:
    base = read_settings(ROOT).settings
    assert base is not None
    data = base.model_dump(mode="json")
    # room for about half of them, so both admission and queueing are exercised
    data["capacity"].update(
        maxConcurrentDemos=n // 2, totalCpu=str(4 * n), totalMemory=f"{8 * n}Gi"
    )
    return Settings.model_validate(data)


def demos(n: int) -> list[LoadedDemo]:
    return [
        LoadedDemo(
            f"demos/demo-{i:05d}.yaml",
            Demo.model_validate(
                {
                    "apiVersion": "demos.splits.network/v1",
                    "kind": "Demo",
                    "metadata": {"name": f"demo-{i:05d}"},
                    "spec": {"type": "enterprise", "owner": "a@b.c", "ttl": "2h"},
                }
            ),
        )
        for i in range(n)
    ]


def timed(label: str, n: int, run: object) -> float:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    took = time.perf_counter() - start
    print(f"{label:<10} {n:>6} demos: {took * 1000:8.1f} ms")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", type=int, default=2000)
    n = parser.parse_args().demos
    for size in (n, 2 * n):
        settings = roomy_settings(size)
        queue = [(f"demo-{i:05d}", "small") for i in range(size)]
        timed("admission", size, lambda s=settings, q=queue: admit_in_order(s, q))
        loaded = demos(size)
        created = {d.id: NOW - timedelta(seconds=i) for i, d in enumerate(loaded)}
        timed(
            "plan",
            size,
            lambda s=settings, d=loaded, c=created: plan(s, d, c, {}, Observed(), NOW),
        )


if __name__ == "__main__":
    main()
