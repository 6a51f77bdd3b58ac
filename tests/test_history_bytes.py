"""`democtl history` prints the same bytes for the same history: pinned by a golden copy.

The history below holds every kind of commit `history` tells apart: democtl's
(trailers, several demos, an action missing, a detail in the body), people's
adds, extensions, shortened and switched expiries, edits, deletes, status edits,
an unreadable demo file, paths git quotes, a type change, a merge whose side
branch is not on the main line, and commits outside demos/ and status/. Every
commit has fixed names and dates, so its sha, and the output, is the same on
every machine. `REGENERATE_GOLDEN=1` rewrites the copies (only when the output
is meant to change).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from tests.gitrepo import git

GOLDEN = Path(__file__).resolve().parent / "history_golden"
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ALICE = ("Alice Example", "alice@splits.network")
BOB = ("Bob Example", "bob@splits.network")
BOT = ("democtl", "democtl@splits.network")


def spec(demo_id: str, extra: str = "  ttl: 2h\n") -> str:
    return (
        "apiVersion: demos.splits.network/v1\nkind: Demo\n"
        f"metadata:\n  name: {demo_id}\nspec:\n  type: enterprise\n  profile: small\n"
        f"  owner: alice@splits.network\n{extra}"
    )


class History:
    """A state repository written commit by commit, each at the next minute."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = T0
        git(root.parent, "init", "--quiet", "--initial-branch=main", str(root))

    def commit(
        self,
        who: tuple[str, str],
        message: str,
        files: dict[str, str | None] | None = None,
        *,
        symlinks: dict[str, str] | None = None,
    ) -> str:
        for rel, content in (files or {}).items():
            path = self.root / rel
            if content is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
        for rel, target in (symlinks or {}).items():
            path = self.root / rel
            path.unlink(missing_ok=True)
            path.symlink_to(target)
        git(self.root, "add", "-A")
        self.clock += timedelta(minutes=1)
        git(
            self.root,
            "commit",
            "--quiet",
            "--allow-empty",
            "-F",
            "-",
            env=self.env(who),
            input_text=message,
        )
        return git(self.root, "rev-parse", "HEAD").strip()

    def bot(self, changes: list[tuple[str, str, str]], files: dict[str, str | None]) -> str:
        """A commit as `commit.commit_message` writes them: subject, body lines, trailers."""
        subject = ", ".join(f"{d}: {a}" for d, a, _ in changes)
        body = [f"- {d}: {a}" + (f" ({x})" if x else "") for d, a, x in changes]
        trailers = [f"Demo-{k}: {v}" for d, a, _ in changes for k, v in (("Id", d), ("Action", a))]
        return self.commit(BOT, "\n".join([subject, "", *body, "", *trailers]) + "\n", files)

    def env(self, who: tuple[str, str]) -> dict[str, str]:
        stamp = f"@{int(self.clock.timestamp())} +0000"
        name, email = who
        return {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
        }


def build(root: Path) -> Path:
    h = History(root)
    h.commit(
        ALICE,
        "initial state\n",
        {"reconciler.yaml": "kind: Settings\n", "demos/demo-root.yaml": spec("demo-root")},
    )
    h.commit(
        ALICE,
        "Add demos\n",
        {
            "demos/demo-a.yaml": spec("demo-a"),
            "demos/demo-b.yaml": spec("demo-b", "  expiresAt: 2026-12-01T18:00:00Z\n"),
            "demos/demo-c.yaml": spec("demo-c", ""),
            "demos/demo-bad.yaml": "spec:\n\tttl: 2h\n",
            "demos/README.md": "not a demo\n",
            "demos/nested/demo-n.yaml": spec("demo-n"),
            "demos/.yaml": "spec:\n  ttl: 1h\n",
            "demos/demo x.yaml": spec("demo x"),
            "demos/démo-é.yaml": spec("démo-é"),
        },
    )
    h.bot(
        [("demo-a", "creating", "supabase project requested"), ("demo-b", "creating", "")],
        {"status/demo-a.yaml": "phase: creating\n", "status/demo-b.yaml": "phase: creating\n"},
    )
    h.commit(BOT, "demo-c: odd\n\nDemo-Id: demo-c\n", {"status/demo-c.yaml": "phase: new\n"})
    h.bot([("demo-a", "ready", "")], {"status/demo-a.yaml": "phase: ready\n"})
    h.commit(BOB, "extend a\n", {"demos/demo-a.yaml": spec("demo-a", "  ttl: 5h\n")})
    h.commit(
        BOB,
        "shorten b\n",
        {"demos/demo-b.yaml": spec("demo-b", "  expiresAt: 2026-11-30T18:00:00Z\n")},
    )
    h.commit(ALICE, "c: give it a ttl\n", {"demos/demo-c.yaml": spec("demo-c", "  ttl: 1d\n")})
    h.commit(
        ALICE,
        "a: switch to a date\n",
        {"demos/demo-a.yaml": spec("demo-a", "  expiresAt: 2026-12-24T00:00:00Z\n")},
    )
    h.commit(
        ALICE,
        "c: rename the owner\n",
        {"demos/demo-c.yaml": spec("demo-c", "  ttl: 1d\n").replace("alice", "carol")},
    )
    h.commit(ALICE, "c: a bad ttl\n", {"demos/demo-c.yaml": spec("demo-c", "  ttl: soon\n")})
    h.commit(ALICE, "c: ttl again\n", {"demos/demo-c.yaml": spec("demo-c", "  ttl: 3d\n")})
    h.commit(ALICE, "fix bad\n", {"demos/demo-bad.yaml": spec("demo-bad", "  ttl: 6h\n")})
    h.commit(ALICE, "hand-edit status\n", {"status/demo-b.yaml": "phase: ready\n"})
    h.commit(ALICE, "settings only\n", {"reconciler.yaml": "kind: Settings\n# tuned\n"})
    h.commit(ALICE, "nothing at all\n")
    h.commit(ALICE, "rendered only\n", {"rendered/demo-a/ns.yaml": "kind: Namespace\n"})
    h.commit(ALICE, "b as a link\n", symlinks={"demos/demo-b.yaml": "demo-a.yaml"})
    # a side branch merged by a person: only the merge, against its first parent, is told
    git(h.root, "checkout", "--quiet", "-b", "side")
    h.commit(BOB, "side: extend c\n", {"demos/demo-c.yaml": spec("demo-c", "  ttl: 9d\n")})
    h.commit(BOB, "side: add d\n", {"demos/demo-d.yaml": spec("demo-d", "  ttl: 30m\n")})
    git(h.root, "checkout", "--quiet", "main")
    h.commit(ALICE, "main: touch e\n", {"demos/demo-e.yaml": spec("demo-e")})
    h.clock += timedelta(minutes=1)
    git(h.root, "merge", "--quiet", "--no-ff", "-m", "Merge side\n", "side", env=h.env(ALICE))
    h.bot(
        [(f"demo-{n:02d}", "expired, removed", "ttl 2h ran out") for n in range(3)]
        + [("demo-e", "creating", "")],
        {"status/demo-e.yaml": "phase: creating\n"},
    )
    h.commit(
        ALICE,
        "drop a and the odd ones\n",
        {"demos/demo-a.yaml": None, "demos/demo x.yaml": None, "demos/.yaml": None},
    )
    h.bot([("demo-a", "removed", "file deleted")], {"status/demo-a.yaml": None})
    return h.root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("history") / "state")


CASES = {
    "table.txt": (),
    "json.json": ("--format", "json"),
    "demo-c.txt": ("demo-c",),
    "demo-c.json": ("demo-c", "--format", "json"),
    "nobody.txt": ("demo-nobody",),
    "nobody.json": ("demo-nobody", "--format", "json"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_history_prints_the_pinned_bytes(repo: Path, name: str) -> None:
    result = CliRunner().invoke(cli, ["history", *CASES[name], "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        (GOLDEN / name).write_bytes(result.stdout_bytes)
    assert result.stdout_bytes == (GOLDEN / name).read_bytes()
