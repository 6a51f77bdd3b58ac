"""Start-up as a person feels it: `democtl --help` and `democtl validate` over 100 files.

Run from the repository root: `python benchmarks/bench_startup.py [--runs 5]`.

Both run as whole processes (`python -m reconciler`), the best of `--runs`
(the machine is shared: the best run is the least disturbed one), with the CPU
the child used (user + system) beside the wall time. The validate repository
holds reconciler.yaml with room for 100 demos and 100 demo files, committed.
The package's bytecode is compiled first, as an installed wheel's is
(PYTHONDONTWRITEBYTECODE would otherwise make every run compile the sources).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.steady_state import demo_file, git, settings_for  # noqa: E402


def run(*args: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"democtl {' '.join(args)} failed:\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def best(runs: int, *args: str) -> dict[str, float]:
    results = [run(*args) for _ in range(runs)]
    wall, cpu = min(results)
    return {"wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "reconciler", quiet=1)
    with tempfile.TemporaryDirectory(prefix="democtl-bench-start-") as tmp:
        repo = Path(tmp) / "state"
        repo.mkdir()
        git(repo, "init", "--quiet", "--initial-branch=main")
        (repo / "reconciler.yaml").write_text(settings_for(100))
        (repo / "demos").mkdir()
        for i in range(100):
            (repo / "demos" / f"demo-b{i:05d}.yaml").write_text(demo_file(i))
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", "100 demos")
        figures = {
            "help": best(args.runs, "--help"),
            "validate_100": best(args.runs, "validate", "--repo", str(repo)),
        }
    print(json.dumps({"startup": figures}))


if __name__ == "__main__":
    main()
