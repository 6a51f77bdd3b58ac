"""`democtl create/extend/delete --pr`: a real push to a bare origin, a PR on the emulator.

The state repository is a clone of a bare origin; the GitHub emulator takes its
branches from that origin, so a pull request opens only for a branch that was
really pushed. Every request democtl makes, and every answer, is checked
against tests/contracts' GitHub spec. The failures check that nothing is left
half done: no local branch, no remote branch, no pull request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler import gitstate
from reconciler.cli import cli
from reconciler.cli.pull_request import branch_name, github_repository
from reconciler.local.github_emulator import GitHubEmulator
from reconciler.local.server import Request, Response
from tests.github_support import REPO, TOKEN, Recorder, check_exchange
from tests.gitrepo import clone, demo_yaml, git, origin_and_clone, sample_settings

LANDED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PULLS = "POST /repos/{owner}/{repo}/pulls"


def branches_of(origin: Path) -> set[str]:
    out = git(origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
    return set(out.split())


@dataclass
class World:
    origin: Path
    repo: Path
    github: GitHubEmulator
    recorder: Recorder
    env: dict[str, str]

    def democtl(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        return CliRunner().invoke(
            cli,
            [*args, "--repo", str(self.repo), "--now", NOW.isoformat()],
            env={**self.env, **(env or {})},
        )

    def routes(self) -> list[str]:
        return [call["route"] for call in self.github.calls]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    origin, repo = origin_and_clone(
        tmp_path,
        {
            "reconciler.yaml": sample_settings(),
            "demos/demo-acme01.yaml": demo_yaml("demo-acme01"),
        },
        when=LANDED,
    )
    with GitHubEmulator((REPO,), tokens={TOKEN: "alice"}) as github:
        recorder = Recorder()
        recorder.attach(github)
        github.track_branches(REPO, lambda: branches_of(origin))
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": github.url}
        yield World(origin, repo, github, recorder, env)


def assert_untouched(world: World, *, pulls: int = 0) -> None:
    """The checkout as it was, no democtl branch anywhere, no new pull request."""
    assert git(world.repo, "branch", "--show-current").strip() == "main"
    assert git(world.repo, "status", "--porcelain") == ""
    assert [b for b in git(world.repo, "branch", "--format=%(refname:short)").split()] == ["main"]
    assert branches_of(world.origin) == {"main"}
    assert len(world.github.pull_requests(REPO)) == pulls


def assert_contract(world: World) -> None:
    assert world.recorder.exchanges
    for request, response in world.recorder.exchanges:
        check_exchange(request, response)


def test_create_pr_pushes_the_branch_and_opens_the_pull_request(world: World) -> None:
    result = world.democtl("create", "--type", "startup", "--id", "demo-pitch", "--pr")
    assert result.exit_code == 0, result.output
    url = "https://github.com/splits-network/demos/pull/1"
    assert f"opened pull request {url} (democtl/create-demo-pitch -> main)" in result.stdout
    assert "pushed democtl/create-demo-pitch to origin" in result.stdout
    assert "to open the pull request:" not in result.stdout  # no steps left to the person
    # the person's checkout: still on main, nothing written there
    assert git(world.repo, "branch", "--show-current").strip() == "main"
    assert git(world.repo, "status", "--porcelain") == ""
    assert not (world.repo / "demos" / "demo-pitch.yaml").exists()
    # the branch on origin carries exactly the new demo file, on top of main
    branch = "democtl/create-demo-pitch"
    assert branches_of(world.origin) == {"main", branch}
    files = git(world.origin, "diff", "--name-only", "main", branch).split()
    assert files == ["demos/demo-pitch.yaml"]
    assert git(world.origin, "rev-parse", f"{branch}~1") == git(world.origin, "rev-parse", "main")
    assert "type: startup" in git(world.origin, "show", f"{branch}:demos/demo-pitch.yaml")
    (pull,) = world.github.pull_requests(REPO)
    assert (pull["head"], pull["base"], pull["title"], pull["user"]) == (
        branch,
        "main",
        "demo-pitch: create startup demo",
        "alice",
    )
    assert "demo-pitch: new startup demo (small)" in pull["body"]
    # checked before anything was written, then opened
    assert world.routes() == ["GET /repos/{owner}/{repo}", PULLS]
    assert_contract(world)
    assert TOKEN not in result.output


def test_extend_and_delete_pr_name_their_branches_after_the_command(world: World) -> None:
    first = world.democtl("extend", "demo-acme01", "--hours", "1", "--pr")
    assert first.exit_code == 0, first.output
    assert "(democtl/extend-demo-acme01 -> main)" in first.stdout
    again = world.democtl("extend", "demo-acme01", "--hours", "2", "--pr")
    assert again.exit_code == 0, again.output
    assert "(democtl/extend-demo-acme01-2 -> main)" in again.stdout  # the first one is taken
    gone = world.democtl("delete", "demo-acme01", "--pr", "--branch", "demo/acme-done")
    assert gone.exit_code == 0, gone.output
    assert "(demo/acme-done -> main)" in gone.stdout
    assert [(p["number"], p["head"], p["title"]) for p in world.github.pull_requests(REPO)] == [
        (1, "democtl/extend-demo-acme01", "demo-acme01: extend by 1h"),
        (2, "democtl/extend-demo-acme01-2", "demo-acme01: extend by 2h"),
        (3, "demo/acme-done", "demo-acme01: expire now"),
    ]
    expired = git(world.origin, "show", "demo/acme-done:demos/demo-acme01.yaml")
    assert "expiresAt: 2026-11-25T10:00:00Z" in expired
    assert git(world.repo, "branch", "--show-current").strip() == "main"
    assert_contract(world)


def test_the_repository_is_read_from_origin_when_github_repository_is_unset(
    world: World,
) -> None:
    # origin's URL is GitHub's; git reaches it at the bare repository (insteadOf), as a
    # credential helper or mirror would make it reach github.com
    url = "https://github.com/splits-network/demos.git"
    git(world.repo, "remote", "set-url", "origin", url)
    git(world.repo, "config", f"url.{world.origin}.insteadOf", url)
    result = world.democtl(
        "create", "--type", "startup", "--id", "demo-pitch", "--pr", env={"GITHUB_REPOSITORY": None}
    )
    assert result.exit_code == 0, result.output
    assert "https://github.com/splits-network/demos/pull/1" in result.stdout
    assert branches_of(world.origin) == {"main", "democtl/create-demo-pitch"}


@pytest.mark.parametrize(
    "url, expected",
    [
        pytest.param("https://github.com/o/n.git", "o/n", id="https"),
        pytest.param("https://github.com/o/n", "o/n", id="https-no-suffix"),
        pytest.param("https://x-access-token:t@github.com/o/n.git", "o/n", id="https-with-token"),
        pytest.param("git@github.com:o/n.git", "o/n", id="scp-like-ssh"),
        pytest.param("ssh://git@github.com/o/my.repo.git", "o/my.repo", id="ssh-url"),
        pytest.param("https://ghe.example.com/team/demos.git", "team/demos", id="enterprise"),
        pytest.param("/srv/git/demos.git", None, id="a-path"),
        pytest.param("file:///srv/git/demos.git", None, id="a-file-url"),
        pytest.param("https://gitlab.com/group/sub/demos.git", None, id="nested-groups"),
    ],
)
def test_github_repository_from_a_remote_url(url: str, expected: str | None) -> None:
    assert github_repository(url) == expected


def test_branch_names_skip_taken_ones() -> None:
    taken = {"democtl/create-demo-x", "democtl/create-demo-x-2"}
    assert branch_name("create", "demo-x", taken.__contains__) == "democtl/create-demo-x-3"
    assert branch_name("delete", "demo-x", taken.__contains__) == "democtl/delete-demo-x"


def test_credentials_in_a_url_are_masked() -> None:
    text = "fatal: unable to access 'https://x-access-token:ghs_s3cret@github.com/o/n.git/'"
    assert gitstate.mask_credentials(text) == (
        "fatal: unable to access 'https://***@github.com/o/n.git/'"
    )


# --- nothing half done ---------------------------------------------------------------


@pytest.mark.parametrize(
    "env, setup, message",
    [
        pytest.param(
            {"GITHUB_TOKEN": None}, None, "--pr opens the pull request through", id="no-token"
        ),
        pytest.param(
            {"GITHUB_TOKEN": "ghs_wrong"}, None, "HTTP 401: Bad credentials", id="bad-token"
        ),
        pytest.param(
            {"GITHUB_REPOSITORY": "splits-network/other"}, None, "HTTP 404", id="unknown-repo"
        ),
        pytest.param({}, "no-origin", "and {repo} has none (git remote add", id="no-origin"),
        pytest.param(
            {"GITHUB_REPOSITORY": None},
            None,
            "cannot tell the GitHub repository from origin's URL",
            id="origin-is-a-path",
        ),
    ],
)
def test_what_is_missing_is_said_before_anything_is_written(
    world: World, env: dict[str, str | None], setup: str | None, message: str
) -> None:
    if setup == "no-origin":
        git(world.repo, "remote", "remove", "origin")
    result = world.democtl("create", "--type", "startup", "--id", "demo-pitch", "--pr", env=env)
    assert result.exit_code == 1, result.output
    assert message.format(repo=world.repo) in result.stderr
    assert "nothing was written" in result.stderr
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert not any(call["route"] == PULLS for call in world.github.calls)
    if setup != "no-origin":
        assert_untouched(world)


def test_a_branch_origin_already_has_is_not_pushed_over(world: World, tmp_path: Path) -> None:
    other = clone(world.origin, tmp_path / "other")
    git(other, "switch", "-q", "-c", "democtl/create-demo-pitch")
    git(other, "commit", "-q", "--allow-empty", "-m", "someone's work")
    git(other, "push", "-q", "origin", "democtl/create-demo-pitch")
    theirs = git(world.origin, "rev-parse", "democtl/create-demo-pitch")
    result = world.democtl("create", "--type", "startup", "--id", "demo-pitch", "--pr")
    assert result.exit_code == 1, result.output
    assert "origin already has a branch democtl/create-demo-pitch" in result.stderr
    assert "nothing was pushed, and the local branch democtl/create-demo-pitch was removed" in (
        result.stderr
    )
    assert git(world.origin, "rev-parse", "democtl/create-demo-pitch") == theirs
    assert git(world.repo, "branch", "--format=%(refname:short)").split() == ["main"]
    assert world.github.pull_requests(REPO) == []


def test_a_push_the_remote_refuses_leaves_nothing(world: World) -> None:
    hook = world.origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch creation is restricted' >&2\nexit 1\n")
    hook.chmod(0o755)
    result = world.democtl("create", "--type", "startup", "--id", "demo-pitch", "--pr")
    assert result.exit_code == 1, result.output
    assert "git push of democtl/create-demo-pitch to origin failed" in result.stderr
    assert "branch creation is restricted" in result.stderr
    assert_untouched(world)


def test_a_pull_request_github_refuses_takes_the_pushed_branch_back(world: World) -> None:
    # GitHub answers 422 when a pull request for the head already exists (here opened
    # on the emulator while origin has no such branch, the race the check cannot see)
    world.github.open_pull_request(REPO, "democtl/create-demo-pitch")
    result = world.democtl("create", "--type", "startup", "--id", "demo-pitch", "--pr")
    assert result.exit_code == 1, result.output
    assert (
        "HTTP 422: Validation Failed: A pull request already exists for "
        "splits-network:democtl/create-demo-pitch." in result.stderr
    )
    assert (
        "democtl/create-demo-pitch was pushed to origin, then deleted there again, and the "
        "local branch was removed: nothing is left" in result.stderr
    )
    assert "pushed democtl/create-demo-pitch to origin" in result.stdout
    assert isinstance(result.exception, SystemExit)
    assert_untouched(world, pulls=1)
    assert_contract(world)
    # nothing in the way of the next one
    again = world.democtl("create", "--type", "startup", "--id", "demo-other", "--pr")
    assert again.exit_code == 0, again.output


# --- --local --pr: the GitHub emulator `democtl local github` serves --------------------

NO_GITHUB: dict[str, str | None] = {
    "GITHUB_TOKEN": None,
    "GITHUB_REPOSITORY": None,
    "GITHUB_API_URL": None,
}


def test_local_pr_without_the_local_github_says_how_to_start_it(world: World) -> None:
    result = world.democtl(
        "create", "--type", "startup", "--id", "demo-pitch", "--local", "--pr", env=NO_GITHUB
    )
    assert result.exit_code == 1, result.output
    assert "start `democtl local github` in another terminal; nothing was written" in (
        result.stderr
    )
    assert_untouched(world)


def test_local_pr_opens_the_pull_request_on_the_served_emulator(world: World) -> None:
    env = {k: v for k, v in os.environ.items() if k not in NO_GITHUB}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "democtl"),
            "local",
            "github",
            "--repo",
            str(world.repo),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()  # written once it listens
        assert first.startswith("GitHub emulator for local/clone on http://127.0.0.1:"), first
        assert "export GITHUB_API_URL=http://127.0.0.1:" in server.stdout.readline()
        served = world.repo / ".democtl" / "local" / "github.json"
        assert served.is_file()
        result = world.democtl(
            "create", "--type", "startup", "--id", "demo-pitch", "--local", "--pr", env=NO_GITHUB
        )
        assert result.exit_code == 0, result.output
        assert (
            "opened pull request https://github.com/local/clone/pull/1 "
            "(democtl/create-demo-pitch -> main)" in result.stdout
        )
        assert branches_of(world.origin) == {"main", "democtl/create-demo-pitch"}
        assert git(world.repo, "status", "--porcelain") == ""  # .democtl/ ignores itself
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 130, err
    assert "democtl: interrupted" in err
    assert not served.exists()


def test_ctrl_c_while_github_opens_the_pull_request_keeps_the_branch_and_says_so(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pull request may exist by then (here it does): its branch must stay."""
    from reconciler.cli import main

    handler = world.github.server.handler
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def ctrl_c_during_create(request: Request) -> Response:
        if request.method == "POST" and request.path.endswith("/pulls"):
            # the person's Ctrl-C, while GitHub works: to the thread waiting for the answer
            signal.pthread_kill(main_thread, signal.SIGINT)
        return handler(request)

    world.github.server.handler = ctrl_c_during_create
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    argv = ["democtl", "create", "--type", "startup", "--id", "demo-pitch", "--pr"]
    monkeypatch.setattr("sys.argv", [*argv, "--repo", str(world.repo), "--now", NOW.isoformat()])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted after pushing democtl/create-demo-pitch to origin" in err
    assert err.endswith("democtl: interrupted\n")
    assert branches_of(world.origin) == {"main", "democtl/create-demo-pitch"}
    assert len(world.github.pull_requests(REPO)) == 1
