"""The Actions edge: which pull request, the plan comment (forks included), the entry points."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.github_actions import (
    EMPTY_PLAN,
    FORK_NOTICE,
    EventError,
    annotation_root,
    main,
    post_plan_comment,
    read_pull_request_event,
)
from reconciler.local.github_emulator import GitHubEmulator
from reconciler.providers.github import PLAN_MARKER
from tests.github_support import REPO, TOKEN, running_emulator

FORK = "someone/demos"


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    yield from running_emulator()


def pull_request_event(path: Path, number: int, head_repo: str | None = REPO) -> Path:
    """The fields of a `pull_request` event payload that democtl reads."""
    head = {"ref": "demo-x", "repo": {"full_name": head_repo} if head_repo else None}
    payload = {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": head,
            "base": {"ref": "main", "repo": {"full_name": REPO}},
        },
    }
    path.write_text(json.dumps(payload))
    return path


def env_for(emulator: GitHubEmulator, event: Path) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": emulator.url,
        "GITHUB_EVENT_PATH": str(event),
    }


def test_the_plan_comment_is_posted_once_then_updated(
    emulator: GitHubEmulator, tmp_path: Path
) -> None:
    number = emulator.open_pull_request(REPO, "demo-x")
    env = env_for(emulator, pull_request_event(tmp_path / "event.json", number))
    out = io.StringIO()
    assert post_plan_comment("### democtl plan\n\none\n", env, out=out) == 0
    assert post_plan_comment("### democtl plan\n\ntwo\n", env, out=out) == 0
    (comment,) = emulator.comments(REPO, number)
    assert comment["body"] == f"{PLAN_MARKER}\n### democtl plan\n\ntwo\n"
    assert "plan comment created" in out.getvalue() and "plan comment updated" in out.getvalue()


def test_a_fork_gets_a_validate_only_plan_that_says_so(
    emulator: GitHubEmulator, tmp_path: Path
) -> None:
    number = emulator.open_pull_request(REPO, "demo-x")
    env = env_for(emulator, pull_request_event(tmp_path / "event.json", number, head_repo=FORK))
    assert post_plan_comment("", env, out=io.StringIO()) == 0
    (comment,) = emulator.comments(REPO, number)
    assert comment["body"] == f"{PLAN_MARKER}\n{FORK_NOTICE}{EMPTY_PLAN}"
    assert "Validate-only plan" in comment["body"]


def test_a_fork_whose_token_may_not_comment_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    with GitHubEmulator((REPO,), tokens={"ghs_other": "github-actions[bot]"}) as emulator:
        number = emulator.open_pull_request(REPO, "demo-x")
        env = env_for(emulator, pull_request_event(tmp_path / "event.json", number, head_repo=None))
        out = io.StringIO()
        assert post_plan_comment("plan", env, out=out) == 0
        assert out.getvalue().startswith("::warning title=democtl plan::")
        same_repo = env_for(emulator, pull_request_event(tmp_path / "same.json", number))
        assert post_plan_comment("plan", same_repo, out=io.StringIO()) == 1


def test_not_a_pull_request_is_a_notice(emulator: GitHubEmulator, tmp_path: Path) -> None:
    event = tmp_path / "push.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    out = io.StringIO()
    assert post_plan_comment("plan", env_for(emulator, event), out=out) == 0
    assert out.getvalue().startswith("::notice::")


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param(None, "cannot read the event", id="missing-file"),
        pytest.param("{not json", "cannot read the event", id="not-json"),
        pytest.param(
            '{"pull_request": {"number": 3}}', "base.repo.full_name is missing", id="no-base"
        ),
    ],
)
def test_an_unreadable_event_is_a_clear_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EventError, match=message):
        read_pull_request_event({"GITHUB_EVENT_PATH": str(path)})
    with pytest.raises(EventError, match="GITHUB_EVENT_PATH is not set"):
        read_pull_request_event({})


def test_the_event_says_whether_the_pull_request_is_a_fork(tmp_path: Path) -> None:
    same = read_pull_request_event(
        {"GITHUB_EVENT_PATH": str(pull_request_event(tmp_path / "a", 4))}
    )
    fork = read_pull_request_event(
        {"GITHUB_EVENT_PATH": str(pull_request_event(tmp_path / "b", 4, head_repo=FORK))}
    )
    assert same is not None and same.number == 4 and not same.from_fork
    assert fork is not None and fork.from_fork


@pytest.mark.parametrize(
    "workspace, repo, root",
    [
        pytest.param("/w", "/w", "", id="at-the-root"),
        pytest.param("/w", "/w/state", "state", id="in-a-folder"),
        pytest.param("/w", "/elsewhere", "", id="outside"),
        pytest.param(None, "/w/state", "", id="not-in-actions"),
    ],
)
def test_annotation_root(workspace: str | None, repo: str, root: str) -> None:
    env = {"GITHUB_WORKSPACE": workspace} if workspace else {}
    assert annotation_root(Path(repo), env) == root


def test_annotate_entry_point(tmp_path: Path) -> None:
    problems = [
        {"file": "demos/demo-x.yaml", "line": 8, "field": "spec.ttl", "message": "99h > 8h"}
    ]
    out = io.StringIO()
    markdown = tmp_path / "problems.md"
    code = main(
        ["annotate", "--markdown", str(markdown), "--repo", str(tmp_path / "state")],
        env={"GITHUB_WORKSPACE": str(tmp_path)},
        stdin=io.StringIO(json.dumps(problems)),
        stdout=out,
    )
    assert code == 0
    assert (
        out.getvalue() == "::error file=state/demos/demo-x.yaml,line=8,title=spec.ttl::99h > 8h\n"
    )
    assert "`spec.ttl`" in markdown.read_text()
    assert main(["annotate"], env={}, stdin=io.StringIO(""), stdout=io.StringIO()) == 1
    assert main(["annotate"], env={}, stdin=io.StringIO("{}"), stdout=io.StringIO()) == 2


def test_comment_entry_point(emulator: GitHubEmulator, tmp_path: Path) -> None:
    number = emulator.open_pull_request(REPO, "demo-x")
    env = env_for(emulator, pull_request_event(tmp_path / "event.json", number))
    plan = tmp_path / "plan.md"
    plan.write_text("### democtl plan\n")
    assert main(["comment", str(plan)], env=env, stdout=io.StringIO()) == 0
    assert main(["comment"], env=env, stdin=io.StringIO("again"), stdout=io.StringIO()) == 0
    assert [c["body"] for c in emulator.comments(REPO, number)] == [f"{PLAN_MARKER}\nagain"]
    assert main(["comment", str(tmp_path / "nope.md")], env=env, stdout=io.StringIO()) == 2
