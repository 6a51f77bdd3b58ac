"""Start-up stays cheap: `--help` and `validate` load no SDK, emulator or template engine.

Checked on `sys.modules` of a fresh interpreter, not on time (a timed test would
flake on a shared machine; the timings live in benchmarks/bench_startup.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.gitrepo import commit_as, demo_yaml, git, sample_settings

# what only a cycle, a render or a provider needs
NEVER_AT_START = (
    "cloudflare",
    "kubernetes",
    "kubernetes_validate",
    "httpx",
    "jinja2",
    "jsonschema",
    "fastjsonschema",
    "psycopg",
    "pgserver",
    "prometheus_client",
    "schedule",
    "reconciler.local.cloudflare_emulator",
    "reconciler.local.supabase_emulator",
    "reconciler.local.github_emulator",
    "reconciler.local.kubernetes",
    "reconciler.local.postgres",
    "reconciler.local.server",
    "reconciler.local.stack",
    "reconciler.providers.cloudflare",
    "reconciler.providers.kubernetes",
    "reconciler.providers.supabase",
    "reconciler.providers.github",
    "reconciler.render",
    "reconciler.loop",
    "reconciler.apply",
)
# and what `--help` alone must not pay for either
NOT_FOR_HELP = (*NEVER_AT_START, "git", "pydantic", "yaml", "ruamel", "reconciler.model")

SCRIPT = """
import json, sys
from reconciler.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="democtl")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def offending(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f"{f}.") for f in forbidden))


def test_importing_the_cli_loads_only_click_and_the_command_modules() -> None:
    assert offending(loaded_by("--help"), NOT_FOR_HELP) == []


def test_a_command_s_help_loads_nothing_heavy_either() -> None:
    assert offending(loaded_by("reconcile", "--help"), NOT_FOR_HELP) == []


def test_validate_loads_the_model_and_git_but_no_sdk_emulator_or_renderer(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "--quiet", "--initial-branch=main", str(repo))
    files: dict[str, bytes | str | None] = {"reconciler.yaml": sample_settings()}
    files |= {f"demos/demo-s{i}.yaml": demo_yaml(f"demo-s{i}") for i in range(3)}
    commit_as(repo, files=files, message="demos")
    modules = loaded_by("validate", "--repo", str(repo))
    assert "reconciler.validate" in modules  # it did validate
    assert offending(modules, NEVER_AT_START) == []
