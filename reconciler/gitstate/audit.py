"""The audit trail: what happened to each demo, read back from the main line.

Owns `HistoryEvent`, `history` and `last_cycle` (democtl's newest commit):
democtl's commits speak through their `Demo-Id`/`Demo-Action` trailers (the
format `commit.commit_message` writes), people's commits through what they
did to `demos/<id>.yaml`. Reads only.
Imports gitpython, the model's duration parser, statusfile and validate's
folder names, the YAML reader, and nothing from gitstate but `_git`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

import git
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from reconciler.gitstate._git import _one_line, _repo
from reconciler.model import parse_duration
from reconciler.statusfile import STATUS_DIR
from reconciler.validate import DEMOS_DIR
from reconciler.yamlfile import MAX_BYTES, YamlError, load_document

_CLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_UNRESOLVED = "tag:democtl,unresolved"


class _SpecLoader(_CLoader or yaml.SafeLoader):  # type: ignore[misc]
    """Resolves a plain scalar's tag only when it is constructed: two per file, not all."""

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            return _UNRESOLVED
        return str(super().resolve(kind, value, implicit))

    # PyYAML's path resolvers, which SafeLoader has none of: two Python calls a node saved
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag == _UNRESOLVED:  # as the composer would: plain, or quoted
            plain = not node.style  # libyaml says "" for plain, PyYAML None
            node.tag = yaml.SafeLoader.resolve(self, ScalarNode, node.value, (plain, not plain))  # type: ignore[no-untyped-call]
        return self.construct_object(node)


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


def _specs_at(repo: git.Repo, objects: list[str]) -> dict[str, dict[str, Any]]:
    """The `spec` of each `rev:path` in `objects` (absent, unreadable: an empty one).

    One `git cat-file --batch` for all of them: a process per object made
    `history` of a long-lived state repository take a minute.
    """
    wanted = sorted(set(objects))
    if not wanted:
        return {}
    done = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo.working_tree_dir or repo.git_dir,
        input=("\n".join(wanted) + "\n").encode(),
        capture_output=True,
        check=True,
    )
    out, at = done.stdout, 0
    specs: dict[str, dict[str, Any]] = {}
    for name in wanted:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3:  # "<name> missing" (a root commit's parent, a bad path)
            specs[name] = {}
            continue
        size = int(header[2])
        specs[name] = _spec_of(out[at : at + size])
        at += size + 1  # the object, then a newline
    return specs


def _spec_of(data: bytes) -> dict[str, Any]:
    """`spec.ttl` and `spec.expiresAt` of a demo file as committed: all `history` reads.

    A long history holds tens of thousands of demo files; building each whole
    (the hardened loader's Python construction) took most of `history`'s time.
    libyaml composes the node tree (an alias there is a shared node, never an
    expansion) and only the two scalars are constructed, with the same safe
    constructor. Whatever the hardened loader would refuse (too big, not UTF-8,
    tabs, anchors or aliases, not a mapping) still reads as no spec at all.
    """
    if len(data) > MAX_BYTES or b"\t" in data or b"&" in data or b"*" in data or _CLoader is None:
        return _whole_spec(data)
    try:
        loader = _SpecLoader(data.decode("utf-8"))
    except UnicodeDecodeError:
        return {}
    try:
        spec = _child(loader.get_single_node(), "spec")
        found: dict[str, Any] = {}
        for key in ("ttl", "expiresAt"):
            value = _child(spec, key)
            if isinstance(value, ScalarNode):
                found[key] = loader.scalar(value)
        return found
    except yaml.YAMLError:
        return {}
    finally:
        loader.dispose()


def _child(node: Node | None, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    values = [v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key]
    return values[0] if len(values) == 1 else None  # a duplicate key: unreadable, as before


def _whole_spec(data: bytes) -> dict[str, Any]:
    try:
        spec = load_document(data).data.get("spec")
    except YamlError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _expiry_text(spec: Mapping[str, Any]) -> str:
    if spec.get("expiresAt") is not None:
        return f"expiresAt {spec['expiresAt']}"
    return f"ttl {spec['ttl']}" if spec.get("ttl") is not None else "default ttl"


def _edit_event(
    specs: Mapping[str, dict[str, Any]], entry: _LogEntry, path: str
) -> tuple[str, str]:
    before = specs[f"{entry.sha}^1:{path}"]
    after = specs[f"{entry.sha}:{path}"]
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
    entries = _log_entries(repo)
    wanted = []
    for entry in entries:
        if any(k == "Demo-Id" for k, _ in entry.trailers):
            continue
        for status, path in entry.files:
            if path.startswith(f"{DEMOS_DIR}/") and path.endswith(".yaml") and status != "D":
                wanted.append(f"{entry.sha}:{path}")
                if status != "A":
                    wanted.append(f"{entry.sha}^1:{path}")
    specs = _specs_at(repo, wanted)
    events: list[HistoryEvent] = []
    for entry in entries:

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
            # strings, not PurePosixPath: tens of thousands of paths in a long history
            folder, _, name = path.rpartition("/")
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix != "yaml" or not stem:
                continue
            if folder == DEMOS_DIR:
                if status == "A":
                    event(stem, "added", _expiry_text(specs[f"{entry.sha}:{path}"]))
                elif status == "D":
                    event(stem, "deleted", "file removed")
                else:
                    event(stem, *_edit_event(specs, entry, path))
            elif folder == STATUS_DIR:
                event(stem, "status edited", "by a commit without Demo-Id trailers")
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
