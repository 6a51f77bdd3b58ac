"""Every lean-cycle benchmark, one after the other, and the whole table at the end.

Run from the repository root: `python benchmarks/run_all.py [--sizes 100 1000 10000]
[--commits 1000 10000 50000]`. Each benchmark runs in a process of its own
(so one's memory is not the next one's peak) and prints a JSON line; this
collects them and prints the markdown table recorded in benchmarks/RESULTS.md.
The 10,000-demo steady state needs about a quarter of an hour on two cores,
most of it bringing the demos up; `--sizes 100 1000` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(script: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{script} failed:\n{done.stderr[-4000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def steady_rows(results: list[dict[str, object]]) -> list[str]:
    rows = [
        "| demos | cycle | democtl CPU (s) | wall (s) | peak memory (MB) "
        "| Supabase / Cloudflare / Kubernetes / HTTP probe requests |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for result in results:
        for kind in ("steady", "run", "cold"):
            figures = result[kind]
            assert isinstance(figures, dict)
            calls = figures["requests"]
            rows.append(
                f"| {result['demos']:,} | {kind} | {figures['cpu_seconds']} "
                f"| {figures['wall_seconds']} | {figures['peak_mb']} "
                f"| {calls['supabase']} / {calls['cloudflare']} / {calls['kubernetes']} "
                f"/ {calls['http probes']} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--commits", type=int, nargs="+", default=[1000, 10000, 50000])
    args = parser.parse_args()
    startup = bench("bench_startup.py")["startup"]
    steady = [bench("steady_state.py", "--demos", str(n)) for n in args.sizes]
    git = bench("bench_git.py", "--commits", *map(str, args.commits))
    assert isinstance(startup, dict)
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}",
        "",
        "**Start-up** (whole process, best of 5)",
        "",
        "| command | wall (s) | CPU (s) |",
        "|---|---:|---:|",
        f"| `democtl --help` | {startup['help']['wall_seconds']} "
        f"| {startup['help']['cpu_seconds']} |",
        f"| `democtl validate` over 100 files | {startup['validate_100']['wall_seconds']} "
        f"| {startup['validate_100']['cpu_seconds']} |",
        "",
        "**No-op cycle over N ready demos** (steady: a process that has run cycles before, "
        "asked about every demo; run: the next cycle of `democtl run --every 5m`, healthy demos "
        "checked in turns; cold: a fresh process, as one `democtl reconcile` per CI run)",
        "",
        *steady_rows(steady),
        "",
        "**Git**",
        "",
        "| history of | `history` wall (s) | CPU (s) | events | `list` wall (s) | CPU (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    histories = git["git_histories"]
    assert isinstance(histories, list)
    for row in histories:
        lines.append(
            f"| {row['commits']:,} commits | {row['history_seconds']} "
            f"| {row['history_cpu_seconds']} | {row['history_events']:,} "
            f"| {row['list_seconds']} | {row['list_cpu_seconds']} |"
        )
    life = git["git_lifetime"]
    assert isinstance(life, dict)
    lines += [
        "",
        f"One demo's lifetime: {life['lifetime_commits']} democtl commits, "
        f"{life['lifetime_bytes']:,} bytes of new git objects; a no-op cycle: "
        f"{life['noop_cycle_commits']} commits, {life['noop_cycle_bytes']} bytes.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
