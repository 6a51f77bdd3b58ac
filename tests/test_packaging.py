"""democtl as a user installs it: every product import is a runtime dependency, and a built
wheel (not the checkout) renders, validates and reconciles the sample demos to ready.

The wheel test builds from a copy of only what a build reads (pyproject.toml, README.md,
LICENSE, reconciler/), installs it with `--no-deps` into a fresh venv outside the
checkout, and lets that venv find the third-party libraries in this test's environment
through a `.pth` line (a path added that way is not a site directory, so this
environment's editable democtl finder is not run there); `reconciler.__file__` is
checked to be the venv's own. The samples (reconciler.yaml, demos/, clusters/) are
copied into a fresh git repository, where the installed `democtl` runs the README's
`democtl reconcile --local --wait 60s`.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT
from tests.gitrepo import git

SAMPLES = sorted(p.stem for p in (PROJECT / "demos").glob("*.yaml"))
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE")


def canonical(name: str) -> str:
    """PEP 503 normalisation: `ruamel.yaml` == `ruamel-yaml`, `PyYAML` == `pyyaml`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return canonical(match.group(0))


def project_table() -> dict[str, object]:
    table = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert isinstance(table, dict)
    return table


def runtime_dependencies() -> set[str]:
    dependencies = project_table()["dependencies"]
    assert isinstance(dependencies, list)
    return {requirement_name(r) for r in dependencies}


def third_party_imports() -> dict[str, list[str]]:
    """Top-level modules imported by reconciler/ that are neither stdlib nor reconciler."""
    found: dict[str, list[str]] = {}
    for path in sorted((PROJECT / "reconciler").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in {"reconciler", "__future__"}:
                    continue
                found.setdefault(top, []).append(path.relative_to(PROJECT).as_posix())
    return found


def test_every_third_party_import_of_the_product_is_a_runtime_dependency() -> None:
    runtime = runtime_dependencies()
    providers = importlib.metadata.packages_distributions()
    imports = third_party_imports()
    assert {"jinja2", "yaml", "fastjsonschema", "jsonschema"} <= set(imports)
    missing = {
        module: sorted(set(files))
        for module, files in imports.items()
        if not {canonical(d) for d in providers.get(module, [])} & runtime
    }
    assert missing == {}, f"imported by the product but not in [project].dependencies: {missing}"


def test_dev_extra_does_not_repeat_runtime_dependencies() -> None:
    extras = project_table()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert {requirement_name(r) for r in extras["dev"]} & runtime_dependencies() == set()


# --- the built wheel ------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        shutil.copy(PROJECT / name, source / name)
    shutil.copytree(
        PROJECT / "reconciler",
        source / "reconciler",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    out = tmp_path_factory.mktemp("dist")
    # --no-build-isolation: the build backend (setuptools, a dev dependency) is already
    # here, so the build needs no index
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("democtl-*.whl")
    return built


@pytest.mark.e2e
def test_wheel_carries_templates_schemas_licences_and_runtime_requirements(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(metadata_name).decode()
    for required in (
        "reconciler/templates/flux/release.yaml.j2",
        "reconciler/templates/statuspage/page.html.j2",
        "reconciler/templates/supabase/migrations/20261125000001_democtl_bookkeeping.sql",
        "reconciler/manifest_schemas/SOURCES.md",
        "reconciler/manifest_schemas/kustomization.json",
        "reconciler/manifest_schemas/crds/helm.toolkit.fluxcd.io/helmrelease_v2.json",
        "reconciler/manifest_schemas/crds/monitoring.coreos.com/servicemonitors-crd.json",
        "reconciler/manifest_schemas/kubernetes/v1.30.0-local-strict/_definitions.json",
        "reconciler/py.typed",
    ):
        assert required in names, required
    assert not any(n.startswith("tests/") for n in names)
    licences = {n.split(".dist-info/licenses/", 1)[1] for n in names if ".dist-info/licenses/" in n}
    assert licences == {
        "LICENSE",
        "reconciler/manifest_schemas/LICENSE.SchemaStore",
        "reconciler/manifest_schemas/crds/LICENSE.datreeio-CRDs-catalog",
        "reconciler/manifest_schemas/crds/monitoring.coreos.com/LICENSE.prometheus-operator",
        "reconciler/manifest_schemas/kubernetes/LICENSE.kubernetes-validate",
    }
    assert "License-Expression: Apache-2.0" in metadata
    required_dists = {
        requirement_name(line.split(":", 1)[1].strip())
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert required_dists == runtime_dependencies()


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv outside the checkout with democtl from the wheel; returns its bin/ folder."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the libraries democtl needs, from this environment, after the venv's own packages
    (Path(purelib) / "reuse-test-environment.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    return venv / "bin"


@pytest.mark.e2e
def test_installed_wheel_reconciles_the_samples_to_ready(installed: Path, tmp_path: Path) -> None:
    venv = installed.parent
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(PROJECT / "reconciler.yaml", state / "reconciler.yaml")
    shutil.copytree(PROJECT / "demos", state / "demos")
    shutil.copytree(PROJECT / "clusters", state / "clusters")
    git(state, "init", "-q", "-b", "main")
    git(state, "add", "-A")
    git(
        state,
        "-c",
        "user.name=Alice Example",
        "-c",
        "user.email=alice@splits.network",
        "commit",
        "-qm",
        "sample demos",
    )
    env = _clean_env()

    where = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import json, reconciler, reconciler.render as r, reconciler.manifests as m; "
            "print(json.dumps([reconciler.__file__, str(r.TEMPLATES_DIR), str(m.SCHEMAS_DIR)]))",
        ],
        cwd=state,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    for path in json.loads(where.stdout):
        assert Path(path).is_relative_to(venv), f"{path} is not from the installed wheel"

    try:
        result = subprocess.run(
            [str(installed / "democtl"), "reconcile", "--local", "--wait", "60s"],
            cwd=state,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        # As root the PostgreSQL cluster lives outside tmp_path (the service user cannot
        # enter it), in the folder `location` names; the command has stopped it by now.
        location = state / ".democtl" / "local" / "postgres" / "location"
        if location.is_file():
            shutil.rmtree(location.read_text().strip(), ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    status_dir = state / ".democtl" / "local" / "state" / "status"
    phases = {
        demo_id: yaml.safe_load((status_dir / f"{demo_id}.yaml").read_text())["phase"]
        for demo_id in SAMPLES
    }
    assert phases == dict.fromkeys(SAMPLES, "ready"), result.stdout
    assert git(state, "status", "--porcelain") == ""  # local mode never touches the branch
