"""The audit trail: what happened to each demo, read back from the main line.

Owns `HistoryEvent`, `history` and `last_cycle` (democtl's newest commit):
democtl's commits speak through their `Demo-Id`/`Demo-Action` trailers (the
format `commit.commit_message` writes), people's commits through what they
did to `demos/<id>.yaml`. Reads only.
Imports gitpython, the model's duration parser, statusfile and validate's
folder names, the YAML reader, and nothing from gitstate but `_git`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path, PurePosixPath
from typing import Any

import git

from reconciler.gitstate._git import _one_line, _repo, _run
from reconciler.model import parse_duration
from reconciler.statusfile import STATUS_DIR
from reconciler.validate import DEMOS_DIR
from reconciler.yamlfile import YamlError, load_document


@dataclass(frozen=True)
class HistoryEvent:
    """One line of a demo's audit trail, from one commit on the main line."""

    demo_id: str
    when: datetime
    action: str
    detail: str
    author: str
    email: str
    commit: str
    subject: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "demo": self.demo_id,
            "time": self.when.isoformat().replace("+00:00", "Z"),
            "action": self.action,
            "detail": self.detail,
            "author": self.author,
            "email": self.email,
            "commit": self.commit,
            "subject": self.subject,
        }


@dataclass
class _LogEntry:
    sha: str
    author: str
    email: str
    when: datetime
    subject: str
    trailers: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    def detail_of(self, demo_id: str, action: str) -> str:
        """The `(detail)` of commit_message's body line for this change, if it has one."""
        head = f"- {_one_line(demo_id)}: {_one_line(action)} ("
        for line in self.body.splitlines():
            if line.startswith(head) and line.endswith(")"):
                return line[len(head) : -1]
        return ""


def _log_entries(repo: git.Repo) -> list[_LogEntry]:
    output = repo.git.log(
        "--first-parent",
        "--diff-merges=first-parent",
        "--no-renames",
        "--reverse",
        "--name-status",
        "--format=%x00%H%x1f%an%x1f%ae%x1f%ct%x1f%s%x1f%(trailers:only,unfold)%x1f%b%x1f",
        "--",
        f"{DEMOS_DIR}/",
        f"{STATUS_DIR}/",
    )
    entries = []
    for chunk in output.split("\x00")[1:]:
        sha, author, email, ct, subject, trailers, body, rest = chunk.split("\x1f", 7)
        entry = _LogEntry(sha, author, email, datetime.fromtimestamp(int(ct), UTC), subject)
        entry.body = body
        for line in trailers.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry.trailers.append((key.strip(), value.strip()))
        for line in rest.splitlines():
            parts = line.split("\t")
            if len(parts) == 2:
                entry.files.append((parts[0], parts[1]))
        entries.append(entry)
    return entries


def _spec_at(repo: git.Repo, rev: str, path: str) -> dict[str, Any]:
    status, out, _ = _run(repo, "show", f"{rev}:{path}")
    if status != 0:
        return {}
    try:
        spec = load_document(out.encode()).data.get("spec")
    except YamlError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _expiry_text(spec: Mapping[str, Any]) -> str:
    if spec.get("expiresAt") is not None:
        return f"expiresAt {spec['expiresAt']}"
    return f"ttl {spec['ttl']}" if spec.get("ttl") is not None else "default ttl"


def _edit_event(repo: git.Repo, entry: _LogEntry, path: str) -> tuple[str, str]:
    before = _spec_at(repo, f"{entry.sha}^1", path)
    after = _spec_at(repo, entry.sha, path)
    old, new = _expiry_text(before), _expiry_text(after)
    if old == new:
        return "edited", ""
    return "extended" if _later(before, after) else "expiry changed", f"{old} -> {new}"


def _later(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    try:
        if before.get("ttl") and after.get("ttl"):
            return parse_duration(str(after["ttl"])) > parse_duration(str(before["ttl"]))
        if before.get("expiresAt") and after.get("expiresAt"):
            return str(after["expiresAt"]) > str(before["expiresAt"])
    except ValueError:
        return False
    return False


def history(root: Path, demo_id: str | None = None) -> list[HistoryEvent]:
    """The audit trail of demos/ and status/ on the main line, oldest first.

    democtl's commits speak through their `Demo-Id`/`Demo-Action` trailers;
    people's commits through what they did to `demos/<id>.yaml`: added,
    extended (ttl or expiresAt raised), expiry changed, edited, deleted.
    """
    repo = _repo(root)
    if not repo.head.is_valid():
        return []
    events: list[HistoryEvent] = []
    for entry in _log_entries(repo):

        def event(demo: str, action: str, detail: str, entry: _LogEntry = entry) -> None:
            if demo_id is None or demo == demo_id:
                events.append(
                    HistoryEvent(
                        demo,
                        entry.when,
                        action,
                        detail,
                        entry.author,
                        entry.email,
                        entry.sha,
                        entry.subject,
                    )
                )

        ids = [v for k, v in entry.trailers if k == "Demo-Id"]
        actions = [v for k, v in entry.trailers if k == "Demo-Action"]
        if ids:
            for demo, action in zip_longest(ids, actions, fillvalue=""):
                if demo:
                    event(demo, action or "updated", entry.detail_of(demo, action))
            continue
        for status, path in entry.files:
            pure = PurePosixPath(path)
            if pure.suffix != ".yaml":
                continue
            if pure.parent.as_posix() == DEMOS_DIR:
                if status == "A":
                    event(pure.stem, "added", _expiry_text(_spec_at(repo, entry.sha, path)))
                elif status == "D":
                    event(pure.stem, "deleted", "file removed")
                else:
                    event(pure.stem, *_edit_event(repo, entry, path))
            elif pure.parent.as_posix() == STATUS_DIR:
                event(pure.stem, "status edited", "by a commit without Demo-Id trailers")
    return events


def last_cycle(root: Path, email: str) -> tuple[datetime, str] | None:
    """When democtl (the committer `email`) last committed on the main line, and the sha.

    A cycle that changed nothing commits nothing, so this is the last cycle
    that changed something: what git can tell, and the same answer for anyone
    who reads the same commit. None before democtl's first commit.
    """
    repo = _repo(root)
    if not repo.head.is_valid():
        return None
    out = repo.git.log(
        "-1", "--first-parent", "--fixed-strings", f"--author=<{email}>", "--format=%ct %H"
    ).strip()
    if not out:
        return None
    stamp, sha = out.split()
    return datetime.fromtimestamp(int(stamp), UTC), sha
