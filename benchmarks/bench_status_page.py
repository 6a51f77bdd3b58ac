"""The status page over many demos: building it and rendering Markdown and HTML.

Run from the repository root: `python benchmarks/bench_status_page.py [--demos 500]`.
Prints the time of each step at n and 2n demos (each demo with a ready status); every
step is one pass over the demos, so the second figure should be about twice the first.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_admission import demos, roomy_settings  # noqa: E402
from reconciler import statuspage  # noqa: E402
from reconciler.model import Condition, DemoStatus, Phase  # noqa: E402

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def status(demo_id: str) -> DemoStatus:
    return DemoStatus(
        id=demo_id,
        namespace=demo_id,
        demoType="enterprise",
        profile="small",
        phase=Phase.READY,
        createdBy="a@b.c",
        createdAt=NOW - timedelta(hours=1),
        expiresAt=NOW + timedelta(hours=1),
        specHash="sha256:0",
        urls={"portal": f"https://{demo_id}-portal.example", "candidate": f"https://{demo_id}-c"},
        conditions=[
            Condition(type="Ready", status="True", reason="AllHealthy", lastTransitionTime=NOW)
        ],
    )


def timed(label: str, n: int, run: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = run()
    print(f"{label:<10} {n:>6} demos: {(time.perf_counter() - start) * 1000:8.1f} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", type=int, default=500)
    n = parser.parse_args().demos
    for size in (n, 2 * n):
        settings = roomy_settings(size)
        loaded = demos(size)
        statuses = {d.id: status(d.id) for d in loaded}
        created = {d.id: NOW - timedelta(hours=1) for d in loaded}
        changes = {d.id: (NOW, "ready") for d in loaded}

        def build(s=settings, d=loaded, st=statuses, c=created, ch=changes):  # type: ignore[no-untyped-def]
            return statuspage.build_page(
                s,
                d,
                st,
                untrusted=frozenset(),
                created_at=c,
                capacity=statuspage.page_capacity(s, d, st),
                last_changes=ch,
                last_cycle=(NOW, "0" * 40),
                now=NOW,
            )

        page = timed("build", size, build)
        timed("markdown", size, lambda p=page: statuspage.markdown(p))  # type: ignore[arg-type]
        timed("html", size, lambda p=page: statuspage.html(p))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
