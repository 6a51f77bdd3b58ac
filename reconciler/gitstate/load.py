"""Loading the state: settings, demo files, status files and creation times at HEAD.

Owns `State`, `load_state`, `creation_times` (when each demo file landed on the
main line, from git history) and `read_statuses`. Reads only; never writes or
commits, and reports bad content in the State instead of raising. Imports
gitpython, the model, statusfile, validate and workspace; no other gitstate module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import git

from reconciler.model import Demo, DemoStatus, Settings
from reconciler.names import DEMO_ID_PATTERN
from reconciler.statusfile import STATUS_DIR, read_status
from reconciler.validate import DEMOS_DIR, LoadedDemo, Problem, check_repository
from reconciler.workspace import demo_paths, read_bounded, read_demo, read_settings

log = logging.getLogger(__name__)


def creation_times(repo_path: Path) -> dict[str, datetime]:
    """When each demo file landed on the main line: `createdAt`, from which `ttl` counts.

    The rule: the committer time of the commit on HEAD's first-parent line whose
    diff against its first parent adds `demos/<id>.yaml`. For a pull request
    that is the merge (or squash) commit, i.e. when it landed, not when it was
    written. A later commit that edits the file (a ttl extension) does not move it.
    A file that was deleted and added again starts a new demo: the newest
    addition wins. A rename is a new demo too: the id is the file name, so
    renames are not followed (`--no-renames`) and the new name's clock starts
    at the rename. Only files present at HEAD have an entry; files not yet
    committed have none (their clock starts now).
    """
    try:
        repo = git.Repo(repo_path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return {}
    if not repo.head.is_valid():
        return {}
    output = repo.git.log(
        "--first-parent",
        "--diff-merges=first-parent",
        "--no-renames",
        "--diff-filter=A",
        "--format=%x00%ct",
        "--name-only",
        "--",
        f"{DEMOS_DIR}/",
    )
    times: dict[str, datetime] = {}
    for chunk in output.split("\x00")[1:]:
        lines = [line for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        when = datetime.fromtimestamp(int(lines[0]), UTC)
        for name in lines[1:]:
            path = Path(name)
            if path.parent.as_posix() == DEMOS_DIR and path.suffix == ".yaml":
                # log is newest first: the first addition seen is the latest one
                times.setdefault(path.stem, when)
    present = {
        PurePosixPath(name).stem
        for name in repo.git.ls_tree("--name-only", "HEAD", f"{DEMOS_DIR}/").splitlines()
    }
    return {demo_id: when for demo_id, when in times.items() if demo_id in present}


@dataclass(frozen=True)
class State:
    """Everything one cycle knows from git, read once at its start.

    `statuses` holds only status files that parsed and validated; an id in
    `untrusted_status` had a status file that did not (its problem is in
    `status_problems`): the caller rebuilds that status and must not act on it.
    """

    root: Path
    head: str | None
    settings: Settings | None
    settings_problems: tuple[Problem, ...]
    demos: tuple[LoadedDemo, ...]
    demo_problems: tuple[Problem, ...]
    statuses: Mapping[str, DemoStatus]
    status_problems: tuple[Problem, ...]
    untrusted_status: frozenset[str]
    created_at: Mapping[str, datetime]

    @property
    def usable(self) -> bool:
        """False when the settings are unusable: the command should exit 2."""
        return self.settings is not None

    @property
    def valid_demos(self) -> dict[str, Demo]:
        return {d.id: d.demo for d in self.demos if d.valid and d.demo is not None}

    @property
    def live_ids(self) -> frozenset[str]:
        """Demos the reconciler has acted on: they have a status file, readable or not."""
        return frozenset(self.statuses) | self.untrusted_status

    @property
    def vanished_ids(self) -> frozenset[str]:
        """Live demos whose file is gone or cannot be read: what the guard counts."""
        return self.live_ids - frozenset(self.valid_demos)

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.settings_problems + self.demo_problems + self.status_problems


def load_state(root: Path, now: datetime) -> State:
    """Read the working tree of `root` (a checkout of HEAD) and its history.

    Never raises for bad content: every problem is returned in the State. An
    unusable settings file leaves `settings` None (exit 2 for the caller); demo
    files are still loaded on their own so that they can be reported.
    """
    settings_result = read_settings(root)
    settings = settings_result.settings
    created_at = creation_times(root)
    demos = tuple(read_demo(root, p) for p in demo_paths(root))
    if settings is not None:
        demo_problems = tuple(check_repository(list(demos), settings, created_at, now))
    else:
        demo_problems = tuple(p for d in demos for p in d.problems)
    statuses, status_problems = _read_statuses(root)
    untrusted = frozenset(p.file for p in status_problems)
    try:
        repo = git.Repo(root)
        head = repo.head.commit.hexsha if repo.head.is_valid() else None
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        head = None
    for problem in status_problems:
        log.warning("%s: status not trusted, it will be rebuilt: %s", problem.file, problem)
    return State(
        root=root,
        head=head,
        settings=settings,
        settings_problems=tuple(settings_result.problems),
        demos=demos,
        demo_problems=demo_problems,
        statuses=statuses,
        status_problems=tuple(status_problems),
        untrusted_status=frozenset(PurePosixPath(f).stem for f in untrusted),
        created_at=created_at,
    )


def _read_statuses(root: Path) -> tuple[dict[str, DemoStatus], list[Problem]]:
    folder = root / STATUS_DIR
    statuses: dict[str, DemoStatus] = {}
    problems: list[Problem] = []
    if not folder.is_dir():
        return statuses, problems
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue  # write_files' temporary files start with a dot
        rel = f"{STATUS_DIR}/{path.name}"
        if path.suffix != ".yaml" or not re.match(DEMO_ID_PATTERN, path.stem):
            log.warning("%s: ignored, not a status file name", rel)
            continue
        result = read_status(read_bounded(path), rel)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            statuses[result.id] = result
    return statuses, problems


def read_statuses(root: Path) -> tuple[dict[str, DemoStatus], list[Problem]]:
    """The status files under `root/status/` (no git needed): valid ones by id, and problems."""
    return _read_statuses(root)


def uncommitted_demo_files(root: Path) -> list[str]:
    """Demo files under demos/ whose working-tree state is not committed, sorted.

    Untracked, modified, staged or deleted: `git status` of `demos/*.yaml`
    against HEAD. Local mode reconciles committed state only (it merges the
    branch's commits), so the command line names these instead of ignoring
    them silently. Empty when `root` is not the top of a git work tree.
    """
    try:
        repo = git.Repo(root)
        out = repo.git.execute(
            ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", DEMOS_DIR],
            strip_newline_in_stdout=False,
        )
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
        return []
    entries = str(out).split("\0")
    found: set[str] = set()
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:
            index += 1  # porcelain -z: a rename's or copy's source path follows
        if PurePosixPath(path).suffix.lower() in {".yaml", ".yml"}:
            found.add(path)
    return sorted(found)
