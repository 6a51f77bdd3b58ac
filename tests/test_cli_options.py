"""The common options as users type them: before or after the command, -C, and no --repo at all.

Every command takes -C, --repo, --local, --now and -v on either side of its
name (as kubectl and git users expect), and without --repo the state
repository is found as git finds its own: upwards from where democtl runs,
within the git work tree. Real repositories from tests.gitrepo, in-process.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.cli.main import cli as group
from reconciler.cli.options import FORMAT_USES
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, git, origin_and_clone

LATER = (BASE_TIME + timedelta(minutes=30)).isoformat()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _, work = origin_and_clone(tmp_path)
    commit_as(work, files={"demos/demo-a.yaml": demo_yaml("demo-a", "2h")}, message="Add demo-a")
    return work


def listed(code_out: tuple[int, str]) -> list[dict[str, object]]:
    code, out = code_out
    assert code == 0, out
    rows: list[dict[str, object]] = json.loads(out)
    return rows


def test_common_options_before_the_command_are_the_same_as_after(repo: Path) -> None:
    after = listed(run("list", "--repo", str(repo), "--now", LATER, "--format", "json"))
    before = listed(run("--repo", str(repo), "--now", LATER, "list", "--format", "json"))
    mixed = listed(run("--repo", str(repo), "list", "--now", LATER, "--format", "json"))
    assert after == before == mixed
    assert [r["id"] for r in after] == ["demo-a"]
    assert after[0]["expiresIn"] == "1h30m"  # --now reached the command from either side


def test_after_the_command_wins_over_before(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "nothing-here"
    elsewhere.mkdir()
    rows = listed(
        run(
            "--repo",
            str(elsewhere),
            "list",
            "--repo",
            str(repo),
            "--now",
            LATER,
            "--format",
            "json",
        )
    )
    assert [r["id"] for r in rows] == ["demo-a"]


def test_dash_c_runs_as_if_started_there(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    by_c = listed(run("-C", str(repo), "list", "--now", LATER, "--format", "json"))
    assert [r["id"] for r in by_c] == ["demo-a"]
    # as in git, a relative --repo is taken from the -C directory, and -C adds up
    relative = listed(run("-C", str(repo.parent), "list", "--repo", repo.name, "--format", "json"))
    chained = listed(run("-C", str(repo.parent), "-C", repo.name, "list", "--format", "json"))
    after = listed(run("list", "-C", str(repo / "demos"), "--format", "json"))
    assert [r["id"] for r in relative] == [r["id"] for r in chained] == [r["id"] for r in after]


def test_without_repo_the_state_repository_is_found_upwards(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = repo / "demos" / "sub"
    deep.mkdir()
    monkeypatch.chdir(deep)
    rows = listed(run("list", "--now", LATER, "--format", "json"))
    assert [r["id"] for r in rows] == ["demo-a"]


def test_the_search_stops_at_the_top_of_the_git_work_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconciler.yaml above the work tree belongs to another project: never used."""
    (tmp_path / "reconciler.yaml").write_text("kind: nope\n")
    inner = tmp_path / "inner"
    git(tmp_path, "init", "--quiet", "--initial-branch=main", str(inner))
    monkeypatch.chdir(inner)
    code, out = run("validate")
    assert code == 2, out
    assert f"reconciler.yaml: not found in {inner.resolve()}" in out, out


def test_an_unknown_dash_c_directory_is_a_usage_error(tmp_path: Path) -> None:
    code, out = run("-C", str(tmp_path / "missing"), "list")
    assert code == 2 and "-C" in out


def _options_of(command: object) -> set[str]:
    return {opt for p in command.params for opt in p.opts}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path",
    [
        ["validate"],
        ["schema"],
        ["render"],
        ["plan"],
        ["reconcile"],
        ["run"],
        ["list"],
        ["status"],
        ["history"],
        ["capacity"],
        ["create"],
        ["extend"],
        ["delete"],
        ["local", "inspect"],
    ],
    ids=" ".join,
)
def test_every_command_takes_the_common_options(path: list[str]) -> None:
    command: object = group
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert {"-C", "--repo", "--local", "--now", "-v"} <= _options_of(command)


@pytest.mark.parametrize(
    "args, option",
    [
        (["validate"], "--local"),
        (["schema"], "--repo"),
        (["history"], "--now"),
        (["local", "github"], "--now"),
        (["local", "inspect"], "--now"),
    ],
)
def test_help_says_which_common_option_a_command_does_not_use(args: list[str], option: str) -> None:
    code, out = run(*args, "--help")
    assert code == 0
    block = out[out.index(option) :]
    assert "Not used by this command" in " ".join(block.split()[:40]), out


# --- durations: seconds as well as m/h/d, everywhere ---------------------------------------


def test_now_takes_an_offset_in_seconds(repo: Path) -> None:
    from reconciler.clock import parse_now

    assert parse_now("+90s", BASE_TIME) == BASE_TIME + timedelta(seconds=90)
    assert parse_now("-1m30s", BASE_TIME) == BASE_TIME - timedelta(seconds=90)
    code, out = run("list", "--repo", str(repo), "--now", "+90s", "--format", "json")
    assert code == 0, out


@pytest.mark.parametrize(
    "args",
    [
        ["reconcile", "--wait", "30s"],
        ["reconcile", "--wait", "1m30s"],
        ["run", "--every", "45s"],
        ["run", "--every", "1m30s"],
    ],
    ids=" ".join,
)
def test_wait_and_every_take_seconds(repo: Path, args: list[str]) -> None:
    """The value is accepted: the command goes on to read the (here unusable) settings."""
    (repo / "reconciler.yaml").write_text("kind: nope\n")
    code, out = run(*args, "--repo", str(repo))
    assert code == 2, out
    assert "Invalid value" not in out and "settings are unusable" in out, out


@pytest.mark.parametrize(
    "args, rule",
    [
        (["reconcile", "--wait", "soon"], "--wait"),
        (["run", "--every", "0s"], "--every"),
        (["run", "--every", "5x"], "--every"),
    ],
)
def test_bad_durations_are_usage_errors(repo: Path, args: list[str], rule: str) -> None:
    code, out = run(*args, "--repo", str(repo))
    assert code == 2 and f"Invalid value for {rule}" in out, out


# --- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_in_a_command_exits_130_with_one_line(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import reconciler.inventory
    from reconciler.cli import main

    def interrupt(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    # `list` imports demo_rows when it runs (lazy imports), so patch it where it lives
    monkeypatch.setattr(reconciler.inventory, "demo_rows", interrupt)
    monkeypatch.setattr("sys.argv", ["democtl", "list", "--repo", str(repo)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 130
    captured = capsys.readouterr()
    assert captured.err == "democtl: interrupted\n"
    assert captured.out == ""


# --- help speaks to users -----------------------------------------------------------------


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += _commands(sub, (*path, name))
    return found


@pytest.mark.parametrize("path", _commands(group), ids=lambda p: " ".join(p) or "democtl")
def test_help_speaks_to_users(path: tuple[str, ...]) -> None:
    """No design-document wording (the seed's createInstance), and every option explained."""
    code, out = run(*path, "--help")
    assert code == 0, out
    for jargon in ("seed's", "Instance", "the guard"):
        assert jargon not in out, (jargon, out)
    command: click.Command = group
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help and command.get_short_help_str()
    unexplained = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not p.help]
    assert unexplained == []


# where a value serves another use: the status page's Markdown is a page, not a comment
OWN_USES = {("status-page", "markdown"): "for GitHub to render"}


def test_each_format_value_is_described_the_same_way_by_every_command() -> None:
    """`--format json` means the same everywhere, and its help says it the same way: a
    command may add to the shared words ("for scripts and editors"), never say others
    (unless it is another use, `OWN_USES`)."""
    described: dict[str, set[str]] = {}
    for path in _commands(group):
        command: click.Command = group
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        for param in command.params:
            if "--format" not in param.opts:
                continue
            assert isinstance(param, click.Option) and isinstance(param.type, click.Choice)
            text = param.help or ""
            for choice in param.type.choices:
                assert str(choice) in text, (path, choice)
                words = re.search(rf"\b{choice} (for [^,.]+)", text)
                own = OWN_USES.get((" ".join(path), str(choice)))
                if own:
                    assert words and words.group(1) == own, (path, choice)
                elif words:
                    described.setdefault(str(choice), set()).add(words.group(1))
    assert {"text", "json", "markdown", "table"} <= set(described)
    for choice, said in described.items():
        common = FORMAT_USES[choice]
        assert all(words.startswith(common) for words in said), (choice, said)


def test_usage_names_the_program_democtl(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from reconciler.cli import main

    argv, sys.argv = sys.argv, ["python -m reconciler", "list", "--help"]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("Usage: democtl list [OPTIONS]")


# --- what local mode does not see -------------------------------------------------------------


def test_uncommitted_demo_files_are_untracked_modified_staged_or_deleted(repo: Path) -> None:
    from reconciler.gitstate import uncommitted_demo_files

    assert uncommitted_demo_files(repo) == []
    commit_as(repo, files={"demos/demo-b.yaml": demo_yaml("demo-b"), "demos/demo-c.yaml": "x"})
    (repo / "demos" / "demo-new.yaml").write_text(demo_yaml("demo-new"))
    (repo / "demos" / "demo-a.yaml").write_text(demo_yaml("demo-a", "3h"))
    (repo / "demos" / "demo-b.yaml").unlink()
    (repo / "demos" / "demo-c.yaml").write_text("y")
    git(repo, "add", "demos/demo-c.yaml")
    (repo / "demos" / "README.md").write_text("not a demo file")
    (repo / "reconciler.yaml").write_text("changed outside demos/")
    assert uncommitted_demo_files(repo) == [
        "demos/demo-a.yaml",
        "demos/demo-b.yaml",
        "demos/demo-c.yaml",
        "demos/demo-new.yaml",
    ]
    git(repo, "mv", "demos/demo-c.yaml", "demos/demo-d.yaml")
    assert "demos/demo-d.yaml" in uncommitted_demo_files(repo)


def test_uncommitted_demo_files_outside_a_repository_is_empty(tmp_path: Path) -> None:
    from reconciler.gitstate import uncommitted_demo_files

    assert uncommitted_demo_files(tmp_path) == []
