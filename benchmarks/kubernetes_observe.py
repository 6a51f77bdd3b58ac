"""How observing demo namespaces scales: list calls and wall time against the emulator.

Run: `python -m benchmarks.kubernetes_observe [DEMOS ...]` from the project root.
The point is the shape: the number of requests grows with pages, not with demos.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.providers.kubernetes import KubernetesCluster
from tests.test_kubernetes import CREDENTIALS, SECRET, render


def measure(demos: int) -> tuple[int, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        for index in range(demos):
            render(repo, f"demo-b{index:04d}")
        with KubernetesEmulator(Path(tmp) / "state", source=repo) as emulator:
            cluster = KubernetesCluster.for_url(emulator.url, secret_name=SECRET)
            for index in range(demos):
                cluster.apply_secret(f"demo-b{index:04d}", SECRET, CREDENTIALS)
            assert emulator.api_server is not None
            before = sum(emulator.api_server.requests.values())
            started = time.perf_counter()
            states = cluster.list_namespaces()
            elapsed = time.perf_counter() - started
            requests = sum(emulator.api_server.requests.values()) - before
            cluster.close()
    assert len(states) == demos and all(s.healthy for s in states)
    return requests, elapsed, demos * 4


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10, 100, 300]
    print(f"{'demos':>6} {'pods':>6} {'requests':>9} {'seconds':>8}")
    for demos in sizes:
        requests, elapsed, pods = measure(demos)
        print(f"{demos:>6} {pods:>6} {requests:>9} {elapsed:>8.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
