"""The README's "A demo's life, end to end", run as written: its blocks are what democtl prints.

Each `<!-- readme-check: NAME -->` block in README.md is checked here: a console
block's first line is the command (run as given, plus `--repo` and a fixed
`--now`), the rest what it prints; the plan-comment block is the sticky comment's
body as the GitHub emulator received it. The flow is the real one on a bare
origin and a clone of the samples: the samples reconciled in local mode, `create
--pr`, the pull request's plan comment, the merge, a reconcile, `extend --pr`,
`delete --pr`, each pushed branch holding exactly the file the README names.
Commit ids are compared as placeholders, so a change to the samples does not
make the README wrong about anything but an id.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler import wiring
from reconciler.cli import cli
from reconciler.local.github_emulator import GitHubEmulator
from tests.github_support import REPO, TOKEN, Recorder, check_exchange
from tests.gitrepo import PROJECT, git, origin_and_clone

README = PROJECT / "README.md"
SAMPLES_LANDED = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
CREATE_AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
MERGED_AT = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
EXTEND_AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
DELETE_AT = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
_BLOCK = re.compile(
    r"<!-- readme-check: (?P<name>[a-z-]+) -->\n```(?P<lang>[a-z]+)\n(?P<body>.*?)```\n", re.S
)
_SHA = re.compile(r"\b[0-9a-f]{12}\b")
RENDERED = {
    "namespace.yaml",
    "quota.yaml",
    "limitrange.yaml",
    "networkpolicy.yaml",
    "source.yaml",
    "release.yaml",
    "kustomization.yaml",
    ".render-digest",  # what the folder was rendered from (render.RECORD_FILE)
}


def readme_blocks() -> dict[str, str]:
    section = README.read_text().split("## A demo's life, end to end", 1)[1].split("\n## ", 1)[0]
    return {m["name"]: m["body"] for m in _BLOCK.finditer(section)}


def split_console(block: str) -> tuple[list[str], str]:
    first, _, output = block.partition("\n")
    assert first.startswith("$ democtl "), first
    return shlex.split(first.removeprefix("$ democtl ")), output


def same(actual: str, expected: str) -> bool:
    return _SHA.sub("<sha>", actual) == _SHA.sub("<sha>", expected)


def show(name: str, actual: str) -> str:
    return f"README block {name!r}: after its first line, it should be\n<<<\n{actual}>>>"


def branches_of(origin: Path) -> set[str]:
    return set(git(origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


@pytest.mark.e2e
def test_the_readme_walkthrough_is_what_democtl_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = readme_blocks()
    assert set(blocks) == {"create", "plan-comment", "extend", "delete"}
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    samples = {
        "reconciler.yaml": (PROJECT / "reconciler.yaml").read_bytes(),
        **{f"demos/{p.name}": p.read_bytes() for p in sorted((PROJECT / "demos").glob("*.yaml"))},
    }
    origin, repo = origin_and_clone(tmp_path, samples, when=SAMPLES_LANDED)
    git(repo, "config", "user.name", "Sam Seller")
    git(repo, "config", "user.email", "sam@splits.network")

    with GitHubEmulator((REPO,), tokens={TOKEN: "sam"}) as github:
        recorder = Recorder()
        recorder.attach(github)
        github.track_branches(REPO, lambda: branches_of(origin))
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": github.url}

        def democtl(args: list[str], now: datetime, **extra: str) -> Result:
            stamp = f"@{int(now.timestamp())} +0000"  # commits at `now`: the same ids each run
            result = CliRunner().invoke(
                cli,
                [*args, "--repo", str(repo), "--now", now.isoformat()],
                env={**env, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, **extra},
            )
            assert result.exit_code == 0, result.output
            return result

        wrong: list[str] = []  # every block that differs, reported together at the end

        def check_console(name: str, now: datetime) -> None:
            args, expected = split_console(blocks[name])
            actual = democtl(args, now).output
            if not same(actual, expected):
                wrong.append(show(name, actual))

        # the samples are running
        democtl(["reconcile", "--local", "--wait", "60s"], SAMPLES_LANDED)

        # 1. create --pr: the branch on origin holds exactly demos/demo-globex.yaml
        check_console("create", CREATE_AT)
        branch = "democtl/create-demo-globex"
        assert branches_of(origin) == {"main", branch}
        assert git(origin, "diff", "--name-only", "main", branch).split() == [
            "demos/demo-globex.yaml"
        ]

        # 2. the pull-request workflow's plan, on the pull request's branch, as a comment
        event = tmp_path / "event.json"
        event.write_text(
            json.dumps(
                {
                    "pull_request": {
                        "number": 1,
                        "head": {"ref": branch, "repo": {"full_name": REPO}},
                        "base": {"ref": "main", "repo": {"full_name": REPO}},
                    }
                }
            )
        )
        git(repo, "switch", "-q", branch)
        democtl(
            ["plan", "--local", "--format", "markdown", "--comment"],
            CREATE_AT,
            GITHUB_EVENT_PATH=str(event),
        )
        git(repo, "switch", "-q", "main")
        (comment,) = github.comments(REPO, 1)
        if comment["body"] != blocks["plan-comment"]:
            wrong.append(show("plan-comment", comment["body"]))

        # 3. the merge (a fast-forward, as GitHub's rebase merge), then a cycle
        git(repo, "push", "-q", "origin", f"{branch}:main")
        git(repo, "pull", "-q", "--ff-only")
        democtl(["reconcile", "--local", "--wait", "60s"], MERGED_AT)
        state = wiring.local_state_repo(repo)
        assert (state / "status" / "demo-globex.yaml").is_file()
        assert {p.name for p in (state / "rendered" / "demo-globex").iterdir()} == RENDERED

        # 4. and 5. extend --pr, delete --pr: each a branch changing only the demo's file
        check_console("extend", EXTEND_AT)
        check_console("delete", DELETE_AT)
        for name in ("democtl/extend-demo-globex", "democtl/delete-demo-globex"):
            files = git(origin, "diff", "--name-only", "main", name).split()
            assert files == ["demos/demo-globex.yaml"], name
        assert [p["title"] for p in github.pull_requests(REPO)] == [
            "demo-globex: create enterprise demo",
            "demo-globex: extend by 2h",
            "demo-globex: expire now",
        ]
        for request, response in recorder.exchanges:
            check_exchange(request, response)
    assert not wrong, "\n\n".join(wrong)
