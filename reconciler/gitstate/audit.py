"""The audit trail: what happened to each demo, read back from the main line.

Owns `HistoryEvent`, `history` and `last_cycle` (democtl's newest commit):
democtl's commits speak through their `Demo-Id`/`Demo-Action` trailers (the
format `commit.commit_message` writes), people's commits through what they
did to `demos/<id>.yaml`. Reads only.
Imports gitpython, the model's duration parser, statusfile and validate's
folder names, the YAML reader, and nothing from gitstate but `_git`.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import functools
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from pathlib import Path
from typing import Any

import git
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from reconciler.gitstate._git import GitStateError, _one_line, _repo
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


_LOG_FORMAT = "%x00%H%x1f%an%x1f%ae%x1f%ct%x1f%s%x1f%(trailers:only,unfold)%x1f%b%x1f"
_NO_OBJECT = frozenset({"0" * 40, "0" * 64})  # the side of an add or a delete (SHA-1, SHA-256)
_ADDED, _EDITED = "added", ""  # their details (an edit's action too) come from the specs
_STATUS_EDITED = ("status edited", "by a commit without Demo-Id trailers")

# a commit's events before its specs are read: (demo, action, detail, blob before, after)
_Pending = tuple[str, str, str, str, str]


def _log(repo: git.Repo) -> Iterator[str]:
    """The main line's commits that touched demos/ or status/, newest first, with `--raw`.

    Each record as git writes it, while it writes the rest: parsing overlaps
    git's walk (no `--reverse`, which holds all output until the walk ends).
    `--raw` rather than `--name-status`: each changed file comes with its blob
    ids before and after, so the specs are read by id, once per distinct blob,
    and git does not resolve `<commit>^1:<path>` through the trees for each.
    """
    args = [
        "git",
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--no-renames",
        "--raw",
        "--no-abbrev",
        f"--format={_LOG_FORMAT}",
        "--",
        f"{DEMOS_DIR}/",
        f"{STATUS_DIR}/",
    ]
    # as GitPython runs git: its messages in English, its output decoded the same way
    env = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C"}
    with (
        tempfile.TemporaryFile() as errors,  # a file: a full pipe cannot stall git
        subprocess.Popen(
            args, cwd=_cwd(repo), env=env, stdout=subprocess.PIPE, stderr=errors, bufsize=0
        ) as proc,
    ):
        assert proc.stdout is not None
        _widen(proc.stdout.fileno())
        decode = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode
        pending, done = "", False
        try:
            while block := proc.stdout.read(1 << 20):  # unbuffered: what is there, up to 1 MiB
                records = (pending + decode(block)).split("\x00")
                pending = records.pop()
                yield from records
            done = True
        finally:
            if not done:  # the reader gave up: git's walk is not needed
                proc.kill()
        if proc.wait() != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip()
            raise GitStateError(f"git log failed: {said}")
        yield pending + decode(b"", final=True)


def _widen(pipe: int) -> None:
    """Let git run up to 1 MiB ahead of the parsing: at 64 KiB it waits on it, on a busy machine."""
    # not Linux, or above its pipe-max-size: the pipe stays as it is
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, 1 << 20)


def _cwd(repo: git.Repo) -> str:
    return str(repo.working_tree_dir or repo.git_dir)


def _raw_changes(rest: str) -> list[tuple[str, str, str, str]]:
    """(status, path, blob before, blob after) of each `--raw` line of one commit."""
    changes = []
    for line in rest.splitlines():
        meta, tab, path = line.partition("\t")
        parts = meta.split(" ")
        if tab and len(parts) == 5 and parts[0].startswith(":") and "\t" not in path:
            changes.append((parts[4], _unquoted(path), parts[2], parts[3]))
    return changes


# git's C-style quoting (quote.c, quote_c_style): these letters, else three octal digits
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def _unquoted(path: str) -> str:
    """The path as committed, from `--raw`'s spelling of it.

    git writes a path holding a byte over 0x7f (core.quotePath, on by default), a
    control character, `"` or `\\` in double quotes with C escapes: read as it
    stands, `demos/démo-x.yaml` came out as `"demos/d\\303\\251mo-x.yaml"`, in no
    folder, and its commits were missing from `history`. Any other path is as it is.
    """
    if len(path) < 2 or path[0] != '"' or path[-1] != '"':
        return path
    body, out, at = path[1:-1], bytearray(), 0
    while at < len(body):
        char = body[at]
        if char != "\\":
            out += char.encode("utf-8", "surrogateescape")
            at += 1
        elif body[at + 1 : at + 2] in _C_ESCAPES:
            out.append(_C_ESCAPES[body[at + 1]])
            at += 2
        elif len(octal := body[at + 1 : at + 4]) == 3 and all(c in "01234567" for c in octal):
            out.append(int(octal, 8))
            at += 4
        else:
            return path  # not git's quoting after all
    # the bytes git had, read as the rest of its output is
    return out.decode("utf-8", "surrogateescape")


def _named(path: str) -> tuple[str, str] | None:
    """(folder, stem) of `<folder>/<stem>.yaml`; None for any other path."""
    # strings, not PurePosixPath: tens of thousands of paths in a long history
    folder, _, name = path.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    if not dot or suffix != "yaml" or not stem:
        return None
    return folder, stem


def _trailers(text: str) -> tuple[list[str], list[str]]:
    """The `Demo-Id` and the `Demo-Action` values of `%(trailers:only,unfold)`, in order."""
    ids: list[str] = []
    actions: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            key = key.strip()
            if key == "Demo-Id":
                ids.append(value.strip())
            elif key == "Demo-Action":
                actions.append(value.strip())
    return ids, actions


def _details(body: str) -> dict[str, list[str]]:
    """commit_message's body lines `- <id>: <action> (<detail>)`, by what precedes the first `: `.

    A line starting with `- <id>: <action> (` has its first `: ` where that
    head has it, so one bucket holds every line a scan of all would match, in
    order: a pass per commit, not one per demo (a cycle over 10,000 demos
    commits a message of 10,000 lines).
    """
    found: dict[str, list[str]] = {}
    for line in body.splitlines():
        if line.startswith("- ") and line.endswith(")"):
            cut = line.find(": ")
            if cut >= 0:
                found.setdefault(line[:cut], []).append(line)
    return found


def _detail_of(details: Mapping[str, list[str]], demo_id: str, action: str) -> str:
    """The `(detail)` of commit_message's body line for this change, if it has one."""
    head = f"- {_one_line(demo_id)}: {_one_line(action)} ("
    for line in details.get(head[: head.find(": ")], ()):
        if line.startswith(head):
            return line[len(head) : -1]
    return ""


def _democtl_events(fields: list[str], demo_id: str | None) -> list[_Pending] | None:
    """A democtl commit's events, from its trailers; None for a commit without `Demo-Id`."""
    if "Demo-Id" not in fields[5]:  # every trailer keyed `Demo-Id` holds it
        return None
    ids, actions = _trailers(fields[5])
    if not ids:
        return None
    details = _details(fields[6])
    return [
        (demo, action or "updated", _detail_of(details, demo, action), "", "")
        for demo, action in zip_longest(ids, actions, fillvalue="")
        if demo and (demo_id is None or demo == demo_id)
    ]


def _people_events(fields: list[str], demo_id: str | None, blobs: set[str]) -> list[_Pending]:
    """A person's commit's events, from the demo and status files it changed.

    Adds to `blobs` the ids of the specs they need: the new file of an add,
    both sides of an edit.
    """
    events: list[_Pending] = []
    for status, path, before, after in _raw_changes(fields[7]):
        named = _named(path)
        if named is None or (demo_id is not None and named[1] != demo_id):
            continue
        folder, stem = named
        if folder == DEMOS_DIR:
            if status == "A":
                events.append((stem, _ADDED, "", "", after))
                blobs.add(after)
            elif status == "D":
                events.append((stem, "deleted", "file removed", "", ""))
            else:
                events.append((stem, _EDITED, "", before, after))
                blobs.update((before, after))
        elif folder == STATUS_DIR:
            events.append((stem, *_STATUS_EDITED, "", ""))
    return events


def _specs_at(repo: git.Repo, blobs: set[str]) -> dict[str, dict[str, Any]]:
    """The `spec` of each blob id in `blobs` (absent, unreadable: an empty one).

    One `git cat-file --batch` for all of them: a process per object made
    `history` of a long-lived state repository take a minute.
    """
    wanted = sorted(blobs - _NO_OBJECT)
    if not wanted:
        return {}
    done = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=_cwd(repo),
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
        if len(header) != 3:  # "<id> missing" (a submodule's commit)
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


def _edit_event(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, str]:
    old, new = _expiry_text(before), _expiry_text(after)
    if old == new:
        return "edited", ""
    return "extended" if _later(before, after) else "expiry changed", f"{old} -> {new}"


def _later(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    try:
        if before.get("ttl") and after.get("ttl"):
            return _duration(str(after["ttl"])) > _duration(str(before["ttl"]))
        if before.get("expiresAt") and after.get("expiresAt"):
            return str(after["expiresAt"]) > str(before["expiresAt"])
    except ValueError:
        return False
    return False


@functools.lru_cache(maxsize=1024)
def _duration(text: str) -> timedelta:
    """parse_duration once per distinct ttl: a long history repeats a handful of them."""
    return parse_duration(text)


def history(root: Path, demo_id: str | None = None) -> list[HistoryEvent]:
    """The audit trail of demos/ and status/ on the main line, oldest first.

    democtl's commits speak through their `Demo-Id`/`Demo-Action` trailers;
    people's commits through what they did to `demos/<id>.yaml`: added,
    extended (ttl or expiresAt raised), expiry changed, edited, deleted.
    One pass over `git log` keeps per commit only what its events need (and
    only demo_id's, when given), then one `cat-file` reads the specs they name.
    """
    repo = _repo(root)
    if not repo.head.is_valid():
        return []
    commits: list[tuple[list[str], list[_Pending]]] = []
    blobs: set[str] = set()
    records = _log(repo)
    next(records, None)  # what precedes the first record: nothing
    for record in records:
        fields = record.split("\x1f", 7)
        events = _democtl_events(fields, demo_id)
        if events is None:
            events = _people_events(fields, demo_id, blobs)
        if events:
            commits.append((fields, events))
    specs = _specs_at(repo, blobs)
    found: list[HistoryEvent] = []
    for fields, events in reversed(commits):
        sha, author, email, ct, subject = fields[:5]
        when = datetime.fromtimestamp(int(ct), UTC)
        for demo, told, told_detail, before, after in events:
            action, detail = told, told_detail
            if told == _ADDED:
                detail = _expiry_text(specs.get(after, {}))
            elif told == _EDITED:
                action, detail = _edit_event(specs.get(before, {}), specs.get(after, {}))
            found.append(HistoryEvent(demo, when, action, detail, author, email, sha, subject))
    return found


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
