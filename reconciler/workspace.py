"""Read-only access to the files of a state repository's working tree.

Reads `reconciler.yaml` and `demos/*.yaml` as bytes and hands them to the
validators, and the files under rendered/ for comparison with a new render.
Never writes: every write under demos/, status/ and rendered/ belongs to
`gitstate`. Imports the model, validation, render's folder name and the YAML reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reconciler.model import Settings
from reconciler.validate import (
    DEMOS_DIR,
    SETTINGS_FILE,
    LoadedDemo,
    Problem,
    load_demo,
    load_settings,
)
from reconciler.yamlfile import MAX_BYTES


@dataclass
class SettingsResult:
    settings: Settings | None
    problems: list[Problem]


def read_bounded(path: Path) -> bytes:
    """Read at most one byte past the limit, so a huge file costs nothing to refuse."""
    with path.open("rb") as handle:
        return handle.read(MAX_BYTES + 1)


def read_settings(root: Path) -> SettingsResult:
    path = root / SETTINGS_FILE
    if not path.is_file():
        return SettingsResult(
            None, [Problem(SETTINGS_FILE, None, "", f"not found in {root} (is --repo right?)")]
        )
    settings, problems = load_settings(SETTINGS_FILE, read_bounded(path))
    return SettingsResult(settings, problems)


def demo_paths(root: Path) -> list[str]:
    folder = root / DEMOS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        f"{DEMOS_DIR}/{p.name}"
        for p in folder.iterdir()
        if (p.is_file() or p.is_symlink()) and p.suffix.lower() in {".yaml", ".yml"}
    )


def relative_demo_path(root: Path, given: str) -> str:
    """The repository-relative path of a file named on the command line."""
    candidate = Path(given)
    absolute = candidate if candidate.is_absolute() else Path.cwd() / candidate
    try:
        return absolute.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return given


def read_demo(root: Path, rel_path: str) -> LoadedDemo:
    if ".." in Path(rel_path).parts:
        return LoadedDemo(
            rel_path, None, [Problem(rel_path, None, "", "paths with '..' are not allowed")]
        )
    path = root / rel_path
    if path.is_symlink():
        # a link could make the reconciler read (and quote) files outside the repository
        return LoadedDemo(
            rel_path, None, [Problem(rel_path, None, "", "symbolic links are not allowed")]
        )
    if not path.is_file():
        return LoadedDemo(rel_path, None, [Problem(rel_path, None, "", "no such file")])
    return load_demo(rel_path, read_bounded(path))


def rendered_files(root: Path) -> dict[str, bytes]:
    """Every file under rendered/, by repository-relative path: what `rendered_writes` compares.

    Nothing is skipped: rendered/ is written only by democtl, so any file there
    that no render wants is stale, dot-files included.
    """
    from reconciler.render import RENDERED_DIR  # here: validate must not load jinja2

    folder = root / RENDERED_DIR
    if not folder.is_dir():
        return {}
    # os.walk on strings: a cycle reads every rendered file, and Path objects per
    # file cost more than the reads (as rglob, symlinked folders are not entered)
    found: dict[str, bytes] = {}
    for top, _dirs, names in os.walk(folder):
        rel_top = os.path.relpath(top, root).replace(os.sep, "/")
        for name in names:
            full = os.path.join(top, name)
            if os.path.isfile(full):
                with open(full, "rb") as handle:
                    found[f"{rel_top}/{name}"] = handle.read()
    return dict(sorted(found.items()))
