"""`democtl create`, `extend`, `delete`: the edits themselves (pure) and the commands on real git.

The pure part checks that an edit touches only the lines it must (comments,
quotes, flow style survive) and refuses what validation would refuse. The
command part runs against a real git repository whose commit dates are fixed,
so the demo's clock (when its file landed) is known.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler import gitstate
from reconciler.cli import cli
from reconciler.edit import (
    Edit,
    EditError,
    check_edit,
    expire,
    extend,
    generate_id,
    new_demo,
    pick_id,
)
from reconciler.model import DemoType, Settings
from reconciler.validate import load_demo
from reconciler.workspace import read_settings
from tests.conftest import PROJECT
from tests.gitrepo import demo_yaml

LANDED = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)

COMMENTED = """\
# yaml-language-server: $schema=../schemas/demo.schema.json
# Demo for the Acme pitch on Thursday; ask Alice before changing.
apiVersion: demos.splits.network/v1
kind: Demo
metadata:
  name: demo-acme01   # agreed with the customer
  labels: {team: sales, region: emea}
spec:
  type: enterprise
  profile: small
  owner: 'alice@splits.network'
  # two hours is enough for the call
  ttl: 2h   # keep short
  branding:
    companyName: "O'Brien & Søn: \\"Talent\\" #1"
    primaryColor: "#0055ff"   # their blue
  seed: {size: medium}
# end of file
"""


@pytest.fixture(scope="module")
def settings() -> Settings:
    result = read_settings(PROJECT)
    assert result.settings is not None
    return result.settings


def changed_lines(before: bytes, after: bytes | None) -> list[tuple[str, str]]:
    assert after is not None
    old, new = before.decode().splitlines(), after.decode().splitlines()
    assert len(old) == len(new), after.decode()
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def spec_of(text: bytes | None) -> dict[str, object]:
    assert text is not None
    return dict(yaml.safe_load(text)["spec"])


# --- create ---------------------------------------------------------------------------


def test_generated_id_is_demo_and_six_lowercase_letters_or_digits() -> None:
    assert generate_id("a1b2c3") == "demo-a1b2c3"
    for token in ("A1B2C3", "a1b2c", "a1b2c3d", "a1-b2c"):
        with pytest.raises(EditError, match="6 lowercase letters or digits"):
            generate_id(token)


def test_pick_id_draws_again_when_the_id_is_taken() -> None:
    taken = {"demo-aaaaaa", "demo-bbbbbb"}
    assert pick_id(iter(["aaaaaa", "bbbbbb", "cccccc"]), taken.__contains__) == "demo-cccccc"
    with pytest.raises(EditError, match="no free demo id after 2 tries; give one with --id"):
        pick_id(iter(["aaaaaa"] * 5), taken.__contains__, attempts=2)


def test_new_demo_is_valid_and_carries_the_schema_line(settings: Settings) -> None:
    company = 'O\'Brien & Søn: "Talent" #1 {not a template}'
    text = new_demo(
        "demo-ent-a1b2c3",
        DemoType.ENTERPRISE,
        "zoë@splits.network",
        settings,
        profile="load-testing",
        company=company,
    )
    assert text.decode().splitlines()[0] == (
        "# yaml-language-server: $schema=../schemas/demo.schema.json"
    )
    loaded = load_demo("demos/demo-ent-a1b2c3.yaml", text)
    assert loaded.problems == []
    assert loaded.demo is not None
    assert loaded.demo.spec.ttl == "24h"  # the profile's default, written out
    assert loaded.demo.spec.branding is not None
    assert loaded.demo.spec.branding.companyName == company
    assert loaded.demo.spec.owner == "zoë@splits.network"


def test_new_demo_refuses_an_unknown_profile(settings: Settings) -> None:
    with pytest.raises(EditError, match="unknown profile 'huge'; known profiles: load-testing"):
        new_demo("demo-x", DemoType.STARTUP, "a@b.c", settings, profile="huge")


# --- extend ---------------------------------------------------------------------------


def test_extend_changes_only_the_ttl_line(settings: Settings) -> None:
    edit = extend("demos/demo-acme01.yaml", COMMENTED.encode(), 3, settings, LANDED, now=NOW)
    assert changed_lines(edit.before or b"", edit.after) == [
        ("  ttl: 2h   # keep short", "  ttl: 5h   # keep short")
    ]
    assert "2h -> 5h" in edit.summary


def test_extend_writes_a_ttl_when_the_default_applied(settings: Settings) -> None:
    text = COMMENTED.replace("  # two hours is enough for the call\n  ttl: 2h   # keep short\n", "")
    edit = extend("demos/demo-acme01.yaml", text.encode(), 1.5, settings, LANDED, now=NOW)
    assert spec_of(edit.after)["ttl"] == "3h30m"
    assert list(spec_of(edit.after))[:4] == ["type", "profile", "owner", "ttl"]
    assert "# their blue" in (edit.after or b"").decode()


def test_extend_moves_expires_at_and_keeps_its_offset(settings: Settings) -> None:
    text = COMMENTED.replace("ttl: 2h", "expiresAt: 2026-11-25T13:00:00+01:00")
    edit = extend("demos/demo-acme01.yaml", text.encode(), 2, settings, LANDED, now=NOW)
    assert changed_lines(text.encode(), edit.after) == [
        (
            "  expiresAt: 2026-11-25T13:00:00+01:00   # keep short",
            "  expiresAt: 2026-11-25T15:00:00+01:00   # keep short",
        )
    ]


@pytest.mark.parametrize(
    "text, hours, message",
    [
        pytest.param(COMMENTED, 6.5, "ttl 8h30m would exceed the maximum of 8h", id="ttl"),
        pytest.param(
            COMMENTED.replace("ttl: 2h", "expiresAt: 2026-11-25T17:00:00Z"),
            2,
            "would be 9h after the demo's start; the maximum for profile 'small' is 8h",
            id="expires-at-counted-from-creation",
        ),
    ],
)
def test_extend_refuses_beyond_the_profile_maximum(
    settings: Settings, text: str, hours: float, message: str
) -> None:
    with pytest.raises(EditError, match=message):
        extend("demos/demo-acme01.yaml", text.encode(), hours, settings, LANDED, now=NOW)


def test_extend_up_to_the_maximum_exactly(settings: Settings) -> None:
    edit = extend("demos/demo-acme01.yaml", COMMENTED.encode(), 6, settings, LANDED, now=NOW)
    assert spec_of(edit.after)["ttl"] == "8h"


def test_a_broken_file_is_not_edited(settings: Settings) -> None:
    with pytest.raises(EditError, match="fix them first"):
        extend("demos/demo-acme01.yaml", b"spec: [\n", 1, settings, LANDED, now=NOW)


# --- delete (expire now) ----------------------------------------------------------------


def test_expire_replaces_ttl_in_place_with_its_comments(settings: Settings) -> None:
    edit = expire(
        "demos/demo-acme01.yaml", COMMENTED.encode(), settings, {"demo-acme01": LANDED}, NOW
    )
    assert changed_lines(COMMENTED.encode(), edit.after) == [
        # the comment stays; ruamel moves it one space after the longer value
        ("  ttl: 2h   # keep short", "  expiresAt: 2026-11-25T11:00:00Z # keep short")
    ]
    loaded = load_demo("demos/demo-acme01.yaml", edit.after or b"")
    assert loaded.demo is not None
    assert loaded.demo.spec.expiresAt == NOW
    assert loaded.demo.spec.ttl is None


def test_expire_without_ttl_inserts_expires_at(settings: Settings) -> None:
    text = COMMENTED.replace("  ttl: 2h   # keep short\n", "")
    edit = expire("demos/demo-acme01.yaml", text.encode(), settings, {"demo-acme01": LANDED}, NOW)
    assert list(spec_of(edit.after))[:4] == ["type", "profile", "owner", "expiresAt"]


def test_expire_of_a_demo_that_never_landed_removes_the_file(settings: Settings) -> None:
    edit = expire("demos/demo-acme01.yaml", COMMENTED.encode(), settings, {}, NOW)
    assert edit.after is None
    assert "never landed" in edit.summary


def test_expire_of_an_expired_demo_changes_nothing(settings: Settings) -> None:
    later = LANDED + timedelta(hours=2)
    edit = expire(
        "demos/demo-acme01.yaml", COMMENTED.encode(), settings, {"demo-acme01": LANDED}, later
    )
    assert not edit.changed
    assert "already expired at 2026-11-25T12:00:00+00:00" in edit.summary


def test_check_edit_separates_capacity_warnings_from_errors(settings: Settings) -> None:
    tiny = settings.model_copy(
        update={"capacity": settings.capacity.model_copy(update={"maxConcurrentDemos": 0})}
    )
    good = Edit("demos/demo-acme01.yaml", None, COMMENTED.encode(), "")
    errors, warnings = check_edit(good, [], tiny, {}, NOW)
    assert errors == []
    assert [w.message.split(";")[0] for w in warnings] == ["would exceed cluster capacity"]
    bad = Edit("demos/demo-acme01.yaml", None, COMMENTED.replace("2h", "9h").encode(), "")
    errors, _ = check_edit(bad, [], settings, {}, NOW)
    assert [(e.field, e.line) for e in errors] == [("spec.ttl", 13)]


# --- the commands on a real git repository -----------------------------------------------


def git(root: Path, *args: str, when: datetime = LANDED) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": when.isoformat(),
        "GIT_COMMITTER_DATE": when.isoformat(),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    root = tmp_path / "state"
    root.mkdir()
    shutil.copy(PROJECT / "reconciler.yaml", root)
    shutil.copytree(PROJECT / "demos", root / "demos")
    (root / "demos" / "demo-acme01.yaml").write_text(COMMENTED)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "sam@splits.network")
    git(root, "config", "user.name", "Sam")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "samples")
    yield root


def democtl(root: Path, *args: str, now: datetime = NOW) -> Result:
    return CliRunner().invoke(cli, [*args, "--repo", str(root), "--now", now.isoformat()])


def test_repo_clock_is_the_commit_that_added_the_file(repo: Path) -> None:
    assert gitstate.creation_times(repo)["demo-acme01"] == LANDED


def test_create_writes_a_valid_file_and_prints_the_pull_request_steps(repo: Path) -> None:
    result = democtl(
        repo, "create", "--type", "startup", "--id", "demo-pitch", "--company", "Søn & Co"
    )
    assert result.exit_code == 0, result.output
    text = (repo / "demos" / "demo-pitch.yaml").read_text()
    assert spec_of(text.encode()) == {
        "type": "startup",
        "profile": "small",
        "owner": "sam@splits.network",  # from git config
        "ttl": "2h",
        "branding": {"companyName": "Søn & Co"},
    }
    assert "+  ttl: 2h" in result.stdout
    assert "git switch -c demo/demo-pitch-create" in result.stdout
    assert "git push -u origin demo/demo-pitch-create" in result.stdout
    assert democtl(repo, "validate").exit_code == 0


def test_create_generates_an_id(repo: Path) -> None:
    before = set((repo / "demos").iterdir())
    result = democtl(repo, "create", "--type", "recruiting-agency", "--owner", "bo@splits.network")
    assert result.exit_code == 0, result.output
    created = [p.name for p in set((repo / "demos").iterdir()) - before]
    assert len(created) == 1
    assert re.fullmatch(r"demo-[a-z0-9]{6}\.yaml", created[0]), created


def test_create_draws_another_id_when_a_file_carries_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo file, or a status left by a demo being torn down, takes the id."""
    import reconciler.cli.demos

    (repo / "status").mkdir()
    (repo / "status" / "demo-bbbbbb.yaml").write_text("phase: destroying\n")
    (repo / "demos" / "demo-aaaaaa.yaml").write_text(demo_yaml("demo-aaaaaa"))
    tokens = iter(["aaaaaa", "bbbbbb", "cccccc"])
    monkeypatch.setattr(reconciler.cli.demos, "random_token", lambda: next(tokens))
    result = democtl(repo, "create", "--type", "startup")
    assert result.exit_code == 0, result.output
    assert (repo / "demos" / "demo-cccccc.yaml").is_file()
    assert "demo-cccccc: new startup demo" in result.stdout


def test_create_on_a_branch_commits_only_the_new_file(repo: Path) -> None:
    (repo / "notes.txt").write_text("unrelated work in progress\n")
    git(repo, "add", "notes.txt")
    result = democtl(
        repo,
        "create",
        "--type",
        "enterprise",
        "--id",
        "demo-b",
        "--branch",
        "demo/b",
        "--ttl",
        "1h",
    )
    assert result.exit_code == 0, result.output
    # the person is back on (never left) the branch they were on, their work as it was
    assert git(repo, "branch", "--show-current").strip() == "main"
    assert git(repo, "status", "--short") == "A  notes.txt\n"
    assert not (repo / "demos" / "demo-b.yaml").exists()
    assert git(repo, "show", "--name-only", "--format=%s", "demo/b").split() == [
        "demo-b:",
        "create",
        "enterprise",
        "demo",
        "demos/demo-b.yaml",
    ]
    assert git(repo, "rev-parse", "demo/b~1") == git(repo, "rev-parse", "main")
    committed = git(repo, "show", "demo/b:demos/demo-b.yaml")
    assert spec_of(committed.encode())["ttl"] == "1h"
    assert "your checkout is unchanged" in result.stdout
    assert "git push -u origin demo/b" in result.stdout
    assert "git switch" not in result.stdout


def test_create_on_an_existing_branch_writes_nothing(repo: Path) -> None:
    git(repo, "branch", "demo/b")
    result = democtl(repo, "create", "--type", "enterprise", "--id", "demo-b", "--branch", "demo/b")
    assert result.exit_code == 2
    assert "branch 'demo/b' already exists" in result.stderr
    assert not (repo / "demos" / "demo-b.yaml").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        pytest.param(
            ["--ttl", "9h"], 1, "spec.ttl: 9h exceeds the maximum of 8h", id="ttl-over-max"
        ),
        pytest.param(["--ttl", "0"], 1, "spec.ttl: '0' is not a duration", id="ttl-zero"),
        pytest.param(["--owner", "a\nb"], 1, "newlines or control characters", id="owner-newline"),
        pytest.param(["--company", "{{ x }}"], 1, "template delimiter", id="company-template"),
        pytest.param(["--profile", "huge"], 1, "unknown profile 'huge'", id="unknown-profile"),
        pytest.param(["--id", "demo-acme01"], 1, "already exists", id="existing-id"),
        pytest.param(["--id", "Demo_X"], 1, "must match", id="bad-id"),
        pytest.param(["--type", "bank"], 2, "Invalid value for '--type'", id="unknown-type"),
    ],
)
def test_create_refuses_and_writes_nothing(
    repo: Path, args: list[str], code: int, message: str
) -> None:
    before = sorted(p.name for p in (repo / "demos").iterdir())
    result = democtl(repo, "create", "--type", "startup", *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert sorted(p.name for p in (repo / "demos").iterdir()) == before


def test_create_without_an_owner_is_a_usage_error(repo: Path) -> None:
    git(repo, "config", "--unset", "user.email")
    result = democtl(repo, "create", "--type", "startup")
    assert result.exit_code == 2
    assert "give --owner" in result.stderr


def test_extend_counts_the_maximum_from_when_the_file_landed(repo: Path) -> None:
    path = repo / "demos" / "demo-acme01.yaml"
    later = LANDED + timedelta(hours=5)
    refused = democtl(repo, "extend", "demo-acme01", "--hours", "6.5", now=later)
    assert refused.exit_code == 1
    assert "at most 6h more" in refused.stderr
    assert path.read_text() == COMMENTED
    result = democtl(repo, "extend", "demo-acme01", "--hours", "6", now=later)
    assert result.exit_code == 0, result.output
    assert "-  ttl: 2h   # keep short\n+  ttl: 8h   # keep short" in result.stdout
    assert path.read_text() == COMMENTED.replace("ttl: 2h", "ttl: 8h")
    assert "expires 2026-11-25T18:00:00+00:00" in result.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        pytest.param(
            ["demo-nope", "--hours", "1"], 1, "no demo file demos/demo-nope.yaml", id="missing"
        ),
        pytest.param(["../etc", "--hours", "1"], 2, "is not a demo id", id="bad-id"),
        pytest.param(["demo-acme01", "--hours", "0"], 2, "--hours", id="zero-hours"),
        pytest.param(["demo-acme01", "--hours", "x"], 2, "--hours", id="bad-hours"),
        pytest.param(["demo-acme01", "--hours", "nan"], 1, "--hours must be", id="nan-hours"),
        pytest.param(["demo-acme01", "--hours", "1e308"], 1, "--hours must be", id="huge-hours"),
    ],
)
def test_extend_bad_arguments(repo: Path, args: list[str], code: int, message: str) -> None:
    result = democtl(repo, "extend", *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr


def test_delete_expires_now_and_the_repository_stays_valid(repo: Path) -> None:
    result = democtl(repo, "delete", "demo-acme01", "--branch", "demo/acme-done")
    assert result.exit_code == 0, result.output
    assert (repo / "demos" / "demo-acme01.yaml").read_text() == COMMENTED  # still on main
    text = git(repo, "show", "demo/acme-done:demos/demo-acme01.yaml")
    assert text == COMMENTED.replace("ttl: 2h   #", "expiresAt: 2026-11-25T11:00:00Z #")
    assert git(repo, "log", "-1", "--format=%s", "demo/acme-done").strip() == (
        "demo-acme01: expire now"
    )
    git(repo, "switch", "--quiet", "demo/acme-done")
    assert democtl(repo, "validate", now=NOW + timedelta(hours=1)).exit_code == 0
    again = democtl(repo, "delete", "demo-acme01", now=NOW + timedelta(hours=1))
    assert again.exit_code == 0
    assert "nothing to change" in again.stdout


def test_delete_of_an_uncommitted_demo_removes_the_file(repo: Path) -> None:
    assert democtl(repo, "create", "--type", "startup", "--id", "demo-draft").exit_code == 0
    result = democtl(repo, "delete", "demo-draft")
    assert result.exit_code == 0, result.output
    assert not (repo / "demos" / "demo-draft.yaml").exists()


# --- durations in seconds ---------------------------------------------------------------


def test_create_with_a_ttl_in_seconds_writes_a_valid_file(repo: Path) -> None:
    result = democtl(repo, "create", "--type", "startup", "--id", "demo-quick", "--ttl", "90s")
    assert result.exit_code == 0, result.output
    assert spec_of((repo / "demos" / "demo-quick.yaml").read_bytes())["ttl"] == "90s"
    assert democtl(repo, "validate").exit_code == 0


def test_extend_keeps_the_seconds_of_a_ttl(settings: Settings) -> None:
    before = COMMENTED.replace("ttl: 2h", "ttl: 1h30s").encode()
    edit = extend("demos/demo-acme01.yaml", before, 1, settings, LANDED, now=NOW)
    assert spec_of(edit.after)["ttl"] == "2h30s"
    assert "expires 2026-11-25T12:00:30+00:00" in edit.summary


# --- create --expires-at, and the expiry extend announces ------------------------------------


def test_create_with_an_expiry_time_instead_of_a_ttl(repo: Path) -> None:
    result = democtl(
        repo,
        "create",
        "--type",
        "startup",
        "--id",
        "demo-timed",
        "--expires-at",
        "2026-11-25T15:30:00Z",
    )
    assert result.exit_code == 0, result.output
    spec = spec_of((repo / "demos" / "demo-timed.yaml").read_bytes())
    assert "ttl" not in spec
    assert str(spec["expiresAt"]).startswith("2026-11-25 15:30:00")
    assert democtl(repo, "validate").exit_code == 0


@pytest.mark.parametrize(
    "args, code, message",
    [
        pytest.param(
            ["--ttl", "2h", "--expires-at", "2026-11-25T15:00:00Z"],
            2,
            "give --ttl or --expires-at, not both",
            id="both",
        ),
        pytest.param(["--expires-at", "2026-11-25T10:00:00Z"], 1, "already past", id="past"),
        pytest.param(["--expires-at", "2026-11-25T15:00:00"], 2, "no time zone", id="naive"),
        pytest.param(["--expires-at", "tomorrow"], 2, "is not a time like", id="garbage"),
    ],
)
def test_create_refuses_a_bad_expiry(repo: Path, args: list[str], code: int, message: str) -> None:
    result = democtl(repo, "create", "--type", "startup", "--id", "demo-timed", *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert not (repo / "demos" / "demo-timed.yaml").exists()


def test_extend_of_a_demo_not_merged_yet_counts_from_the_merge(repo: Path) -> None:
    assert democtl(repo, "create", "--type", "startup", "--id", "demo-draft").exit_code == 0
    result = democtl(repo, "extend", "demo-draft", "--hours", "1")
    assert result.exit_code == 0, result.output
    # its clock starts when the file lands on main, so no time can be promised yet
    assert "ttl 2h -> 3h (expires 3h after it lands on the main branch)" in result.stdout


def test_extend_never_announces_an_expiry_already_past(repo: Path) -> None:
    later = LANDED + timedelta(hours=5)  # ttl 2h: expired three hours ago
    result = democtl(repo, "extend", "demo-acme01", "--hours", "1", now=later)
    assert result.exit_code == 1, result.output
    assert (
        "demo-acme01 expired at 2026-11-25T12:00:00+00:00; extended it would still end at "
        "2026-11-25T13:00:00+00:00, already past: create a new demo instead"
    ) in result.stderr
    assert (repo / "demos" / "demo-acme01.yaml").read_text() == COMMENTED


def test_extend_with_local_counts_from_when_local_mode_first_saw_the_demo(repo: Path) -> None:
    """The reconciler's start is the state repository's; in local mode, its scratch clone."""
    from reconciler.wiring import local_state_repo

    scratch = local_state_repo(repo)
    scratch.parent.mkdir(parents=True)
    git(repo, "clone", "--quiet", str(repo), str(scratch))
    (repo / "demos" / "demo-late.yaml").write_text(demo_yaml("demo-late", "2h"))
    git(repo, "add", "demos/demo-late.yaml")
    git(repo, "commit", "-qm", "add demo-late", when=LANDED)
    seen = LANDED + timedelta(minutes=30)  # local mode merged it half an hour later
    git(scratch, "config", "user.email", "sam@splits.network")
    git(scratch, "config", "user.name", "Sam")
    git(scratch, "pull", "--quiet", "--no-rebase", "--no-ff", "--no-edit", when=seen)
    plain = democtl(repo, "extend", "demo-late", "--hours", "1")
    assert "(expires 2026-11-25T13:00:00+00:00)" in plain.stdout, plain.output
    (repo / "demos" / "demo-late.yaml").write_text(demo_yaml("demo-late", "2h"))
    local = democtl(repo, "extend", "demo-late", "--hours", "1", "--local")
    assert local.exit_code == 0, local.output
    assert "(expires 2026-11-25T13:30:00+00:00)" in local.stdout, local.output


def test_retry_stamps_the_annotation_and_keeps_the_rest(repo: Path) -> None:
    path = repo / "demos" / "demo-acme01.yaml"
    result = democtl(repo, "retry", "demo-acme01")
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert "demos.splits.network/retry:" in after
    assert "# keep short" in after  # comments kept
    loaded = load_demo("demos/demo-acme01.yaml", after.encode())
    assert loaded.valid, loaded.problems
    assert democtl(repo, "retry", "demo-nope").exit_code == 1
