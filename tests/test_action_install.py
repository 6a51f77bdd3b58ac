"""The composite action's real install path, as GitHub runs it.

`uses: <owner>/democtl@<ref>` checks the action out at `$GITHUB_ACTION_PATH`;
action.yml's first step makes a fresh venv and `pip install "$GITHUB_ACTION_PATH"`
(a real, non-editable install with its dependencies from the package index), the
second runs the command from that venv. Both run here under
`bash --noprofile --norc -eo pipefail` (tests/actions_runner.py), against a copy of
this checkout, with no democtl installed beforehand. One test, because the install
takes minutes: marked `slow`, which CI runs (.ci/run runs every test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.actions_runner import ACTION, Runner

PROJECT = Path(__file__).resolve().parent.parent
GOLDEN = PROJECT / "tests" / "golden" / "flux-new" / "demo-acme01"
# what the install needs from the job's environment: the index configuration, proxies
PASSED_THROUGH = ("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_", "REQUESTS_CA")

WORKFLOW = f"""\
name: the action, installed for real
on: push
jobs:
  install:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: validate
        uses: {ACTION}v0.2.0
        with:
          command: validate
      - name: render
        uses: {ACTION}v0.2.0
        with:
          command: render
      - name: where democtl comes from
        shell: bash
        run: |
          "$RUNNER_TEMP/democtl-venv/bin/python" -c 'import reconciler; print(reconciler.__file__)'
"""


def checkout_copy(dest: Path) -> Path:
    """The files `actions/checkout` of this commit would give (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = PROJECT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
@pytest.mark.e2e
def test_the_action_installs_democtl_from_its_checkout_and_runs_it(tmp_path: Path) -> None:
    action_path = checkout_copy(tmp_path / "_actions" / "splits-network" / "democtl" / "v0.2.0")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy(PROJECT / "reconciler.yaml", workspace)
    shutil.copytree(PROJECT / "demos", workspace / "demos")
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    tools = tmp_path / "hostedtoolcache"
    tools.mkdir()
    # what actions/setup-python puts on PATH: a `python` (here, the one running the tests)
    (tools / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (tools / "python").chmod(0o755)
    env = {
        "PATH": f"{tools}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_REPOSITORY": "splits-network/demos",
        "GITHUB_STEP_SUMMARY": str(temp / "step_summary.md"),
        "GITHUB_OUTPUT": str(temp / "output"),
        "RUNNER_TEMP": str(temp),
        **{k: v for k, v in os.environ.items() if k.startswith(PASSED_THROUGH)},
    }
    contexts = {
        "github": {"repository": "splits-network/demos", "token": "unused", "event": {}},
        "vars": {},
        "secrets": {},
        "runner": {"temp": str(temp)},
    }
    workflow = tmp_path / "install.yml"
    workflow.write_text(WORKFLOW)
    runner = Runner(action_path, workspace, temp, env, contexts, timeout=900)

    results = runner.run(workflow)

    assert [(r.name, r.status) for r in results] == [
        ("actions/checkout@v4", "skipped"),
        ("validate", "success"),
        ("render", "success"),
        ("where democtl comes from", "success"),
    ], "\n".join(f"{r.name}: {r.stdout}\n{r.stderr}" for r in results)
    venv = temp / "democtl-venv"
    # installed (not editable) into the action's own venv, from the action's checkout
    installed = Path(runner.step("where democtl comes from").stdout.strip())
    assert installed.is_relative_to(venv), installed
    assert (venv / ".democtl-source").read_text() == str(action_path)
    direct_url = next(venv.glob("lib/python*/site-packages/democtl-*.dist-info/direct_url.json"))
    assert '"editable": true' not in direct_url.read_text()
    # the package data came along: templates rendered, schemas validated
    rendered = workspace / "rendered" / "demo-acme01"
    # the manifests and, beside them, the record of what they were rendered from
    names = sorted(p.name for p in rendered.iterdir())
    assert names == sorted([".render-digest", *(p.name for p in GOLDEN.iterdir())])
    assert "3 demo file(s) checked: 3 valid, 0 problem(s)" in runner.step("validate").stderr
