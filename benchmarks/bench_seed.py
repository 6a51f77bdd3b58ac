"""Benchmark: a large demo seed through the Management API emulator on real PostgreSQL.

Prints, per demo type, the rows seeded, the wall time, rows per second and the
round trips (requests counted by the emulator) for migrate and seed.

    python benchmarks/bench_seed.py [--size large] [--type enterprise ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from reconciler import database
from reconciler.local.postgres import LocalPostgres
from reconciler.local.supabase_emulator import SupabaseEmulator
from reconciler.providers.http import RetryPolicy
from reconciler.providers.supabase import SupabaseManagementClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="large", choices=database.SEED_SIZES)
    parser.add_argument("--type", action="append", choices=database.DEMO_TYPES)
    args = parser.parse_args()
    types = args.type or list(database.DEMO_TYPES)
    now = [1_790_000_000.0]
    with tempfile.TemporaryDirectory(prefix="democtl-bench-") as tmp:
        postgres = LocalPostgres(Path(tmp) / "pg").start()
        try:
            emulator = SupabaseEmulator(
                Path(tmp) / "supabase",
                postgres,
                clock=lambda: now[0],
                come_up_seconds=1,
                organizations=("bench-org",),
                database_lag_seconds=0,
            )
            with emulator:
                client = SupabaseManagementClient(
                    emulator.url, "bench-token", "bench-org", "us-east-1", "democtl-",
                    retry=RetryPolicy.no_wait(), timeout=600,
                )  # fmt: skip
                print(f"{'type':<18} {'size':<6} {'rows':>8} {'seconds':>8} {'rows/s':>9} "
                      f"{'migrate RT':>10} {'seed RT':>8}")  # fmt: skip
                for demo_type in types:
                    demo_id = f"demo-bench-{demo_type[:5]}"
                    project = client.create_project(demo_id, "bench-pass-1")
                    now[0] += 5
                    assert client.is_healthy(project.ref)
                    before = sum(emulator.requests.values())
                    database.migrate(client, project.ref, demo_id)
                    migrate_rt = sum(emulator.requests.values()) - before
                    before = sum(emulator.requests.values())
                    started = time.perf_counter()
                    database.seed(client, project.ref, demo_id, demo_type, args.size, "Bench Co")
                    seconds = time.perf_counter() - started
                    seed_rt = sum(emulator.requests.values()) - before
                    tables = emulator.inspect()["projects"][-1]["tables"]
                    rows = sum(n for t, n in tables.items() if t.startswith("public."))
                    print(f"{demo_type:<18} {args.size:<6} {rows:>8} {seconds:>8.2f} "
                          f"{rows / seconds:>9.0f} {migrate_rt:>10} {seed_rt:>8}")  # fmt: skip
                client.close()
        finally:
            postgres.remove()


if __name__ == "__main__":
    main()
