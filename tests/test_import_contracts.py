"""The import-linter contract that keeps git in one package covers every other module."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

from reconciler import gitstate

PROJECT = Path(__file__).resolve().parent.parent
GITSTATE = "reconciler.gitstate"


def test_every_module_but_gitstate_is_forbidden_to_import_git() -> None:
    config = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    contract = next(
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c["name"] == "Only gitstate touches git"
    )
    modules = set()
    for path in (PROJECT / "reconciler").rglob("*.py"):
        if path.name == "__main__.py":
            continue
        parts = path.with_suffix("").relative_to(PROJECT).parts
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    # the gitstate package may import git: neither it nor any of its submodules is a source
    in_gitstate = {m for m in modules if m == GITSTATE or m.startswith(f"{GITSTATE}.")}
    expected = modules - {"reconciler"} - in_gitstate
    assert set(contract["source_modules"]) == expected


def test_no_gitstate_submodule_is_shadowed_by_a_name_the_package_exports() -> None:
    # `gitstate.sync` must stay the function: a submodule of that name would make
    # `import reconciler.gitstate.sync as m` hand back the function instead
    submodules = {m.name for m in pkgutil.iter_modules(gitstate.__path__)}
    assert submodules, "reconciler.gitstate is expected to be a package"
    assert not submodules & set(gitstate.__all__)
