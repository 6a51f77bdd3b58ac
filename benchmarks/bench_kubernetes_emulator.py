"""What one request about one demo costs the Kubernetes emulator among 100, 1,000, 10,000 demos.

Run from the repository root:
`python benchmarks/bench_kubernetes_emulator.py [--demos 100 1000 10000] [--repeat 20]`.

Each cluster is populated directly through the store (namespace, quota, HelmRelease,
Secret per demo, then one controller pass for pods and statuses, then a snapshot), so
building 10,000 namespaces does not go through 10,000 HTTP writes. Requests are handed
to the API handler in-process (no sockets: the figures are the emulator's own work).
For each request: milliseconds (median of --repeat), objects the store looked at,
journal bytes written. A request about one demo should cost the same at every size;
listing every demo's namespace costs what it returns. The last line per size times
the same GET with `rendered/` of that many demos as the GitOps source, where every
request first checks the tree for changes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.local.kubernetes import KubernetesEmulator  # noqa: E402
from tests.test_kubernetes import CREDENTIALS, SECRET, render  # noqa: E402
from tests.test_kubernetes_store import (  # noqa: E402
    apply_secret,
    delete_secret,
    demo_id,
    fixed_clock,
    get,
    health,
    populate,
)


def requests_about(target: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET secret", "api", lambda: get(f"/api/v1/namespaces/{target}/secrets/{SECRET}")),
        ("LIST pods in its namespace", "api", lambda: get(f"/api/v1/namespaces/{target}/pods")),
        (
            "LIST its pods by label",
            "api",
            lambda: get("/api/v1/pods", labelSelector=f"demos.splits.network/id={target}"),
        ),
        ("GET /health", "health", lambda: health(target)),
        ("PATCH secret (changed)", "api", None),  # alternates two values: always a change
        ("DELETE + PATCH secret", "api", None),
        (
            "LIST namespaces, first page of 500",
            "api",
            lambda: get(
                "/api/v1/namespaces",
                labelSelector="app.kubernetes.io/managed-by=democtl",
                limit="500",
            ),
        ),
    ]


def measure(emulator: KubernetesEmulator, label: str, kind: str, make: Any, repeat: int) -> str:
    target = demo_id(0)
    handler = emulator.handle_health if kind == "health" else emulator.handle
    stats = emulator.store.stats
    seconds: list[float] = []
    before = asdict(stats)
    for round_ in range(repeat):
        if label.startswith("PATCH"):
            steps = [apply_secret(target, {"K": f"v{round_ % 2}"})]
        elif label.startswith("DELETE"):
            steps = [delete_secret(target), apply_secret(target, CREDENTIALS)]
        else:
            steps = [make()]
        started = time.perf_counter()
        for request in steps:
            handler(request)
        seconds.append(time.perf_counter() - started)
    after = asdict(stats)
    visited = (after["visited"] - before["visited"]) / repeat
    written = (after["journal_bytes"] - before["journal_bytes"]) / repeat
    snapshots = after["snapshot_writes"] - before["snapshot_writes"]
    return (
        f"  {label:<36} {statistics.median(seconds) * 1000:>9.3f} {visited:>9.0f} "
        f"{written:>9.0f} {snapshots:>9}"
    )


def with_rendered(tmp: Path, demos: int, repeat: int) -> str:
    repo = tmp / "repo"
    for index in range(demos):
        render(repo, demo_id(index))
    emulator = KubernetesEmulator(tmp / "state-rendered", source=repo, clock=fixed_clock)
    started = time.perf_counter()
    emulator.sync()
    first = time.perf_counter() - started
    request = get(f"/api/v1/namespaces/{demo_id(0)}/pods")
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        emulator.handle(request)
        seconds.append(time.perf_counter() - started)
    return (
        f"  {'LIST pods, rendered/ as source':<36} {statistics.median(seconds) * 1000:>9.3f}"
        f"   (first sync of the tree {first:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-rendered", action="store_true", help="skip the rendered/ line")
    args = parser.parse_args()
    for demos in args.demos:
        with tempfile.TemporaryDirectory() as tmp:
            emulator = KubernetesEmulator(Path(tmp) / "state", clock=fixed_clock)
            started = time.perf_counter()
            populate(emulator, demos)
            setup = time.perf_counter() - started
            store = emulator.store
            print(
                f"{demos} demos: {store.count('namespaces')} namespaces, {store.count('pods')} "
                f"pods, snapshot {store.stats.snapshot_bytes / 1e6:.1f} MB, "
                f"populated in {setup:.1f} s"
            )
            print(f"  {'request':<36} {'ms':>9} {'visited':>9} {'journal B':>9} {'snapshots':>9}")
            for label, kind, make in requests_about(demo_id(0)):
                print(measure(emulator, label, kind, make, args.repeat))
            if not args.no_rendered:
                print(with_rendered(Path(tmp), demos, args.repeat))


if __name__ == "__main__":
    main()
