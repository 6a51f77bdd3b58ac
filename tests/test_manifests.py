"""Manifest validation is part of rendering: the packaged schemas, their provenance, and a
manifest its schema refuses being refused by `render_demo` and `democtl render` before
Flux or Argo CD would see it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import reconciler
from reconciler.cli import cli
from reconciler.manifests import SCHEMAS_DIR, ManifestSchemas, packaged_schemas
from reconciler.model import Settings
from reconciler.render import RenderError, render_demo
from reconciler.validate import load_demo, load_settings
from tests.conftest import CONTRACTS, PROJECT
from tests.gitrepo import git

EXPIRES = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
# Flux's HelmRepository CRD: `url` has pattern ^(http|https|oci)://.*$ ; the model takes any
# string for chart.repository, so a missing scheme is caught by the schema alone.
NO_SCHEME = "charts.example.com/splits"


def settings_with_repository(repository: str) -> Settings:
    settings, problems = load_settings(
        "reconciler.yaml", (PROJECT / "reconciler.yaml").read_bytes()
    )
    assert settings is not None, problems
    chart = settings.chart.model_copy(update={"repository": repository})
    return settings.model_copy(update={"chart": chart})


def acme():  # type: ignore[no-untyped-def]
    loaded = load_demo("demos/demo-acme01.yaml", (PROJECT / "demos/demo-acme01.yaml").read_bytes())
    assert loaded.demo is not None, loaded.problems
    return loaded.demo


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the packaged schemas ----------------------------------------------------------


def test_schemas_are_package_data_beside_the_code() -> None:
    assert SCHEMAS_DIR.parent == Path(reconciler.__file__).parent
    assert (SCHEMAS_DIR / "crds/helm.toolkit.fluxcd.io/helmrelease_v2.json").is_file()
    assert (SCHEMAS_DIR / "kubernetes/v1.30.0-local-strict/namespace-v1.json").is_file()


@pytest.mark.parametrize(
    "folder",
    [SCHEMAS_DIR, CONTRACTS],
    ids=["reconciler/manifest_schemas", "tests/contracts"],
)
def test_every_copied_file_is_in_sources_md_with_its_sha256(folder: Path) -> None:
    sources = (folder / "SOURCES.md").read_text()
    data = sorted(
        p for p in folder.rglob("*.json") if "supabase-recorded" not in p.parts
    )  # the recorded exchanges are listed as one folder
    assert data
    unlisted = [p.relative_to(folder).as_posix() for p in data if sha256(p) not in sources]
    assert unlisted == []


def test_every_licence_file_is_named_in_sources_md() -> None:
    for folder in (SCHEMAS_DIR, CONTRACTS):
        sources = (folder / "SOURCES.md").read_text()
        for licence in folder.rglob("LICENSE*"):
            assert licence.relative_to(folder).as_posix() in sources, licence


def test_packaged_schemas_are_one_instance_per_process() -> None:
    assert packaged_schemas() is packaged_schemas()


# --- rendering refuses what the schemas refuse -------------------------------------


def test_render_refuses_a_helm_repository_url_its_crd_refuses() -> None:
    with pytest.raises(RenderError) as caught:
        render_demo(acme(), settings_with_repository(NO_SCHEME), expires_at=EXPIRES, status=None)
    message = str(caught.value)
    assert message.startswith("rendered/demo-acme01/source.yaml: does not match its schema: ")
    assert "HelmRepository/splits-network: spec.url:" in message
    assert "^(http|https|oci)://" in message


def test_render_accepts_the_same_settings_with_a_scheme() -> None:
    files = render_demo(
        acme(), settings_with_repository(f"https://{NO_SCHEME}"), expires_at=EXPIRES, status=None
    )
    assert b"kind: HelmRepository" in files["source.yaml"]


def test_render_uses_the_schemas_it_is_given() -> None:
    # an empty CRD folder: the Flux kinds have no schema, and rendering says so
    empty = ManifestSchemas(crd_dir=SCHEMAS_DIR / "no-such-folder")
    with pytest.raises(RenderError, match=r"no schema for (HelmRelease|HelmRepository|OCIRep)"):
        render_demo(
            acme(),
            settings_with_repository("oci://ghcr.io/x"),
            expires_at=EXPIRES,
            status=None,
            schemas=empty,
        )


@pytest.fixture
def state_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "state"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    settings = (PROJECT / "reconciler.yaml").read_text()
    assert "repository: oci://ghcr.io/splits-network/charts" in settings
    (repo / "reconciler.yaml").write_text(
        settings.replace(
            "repository: oci://ghcr.io/splits-network/charts", f"repository: {NO_SCHEME}"
        )
    )
    shutil.copytree(PROJECT / "demos", repo / "demos")
    git(repo, "add", "-A")
    git(
        repo,
        "-c",
        "user.name=Alice Example",
        "-c",
        "user.email=alice@splits.network",
        "commit",
        "-qm",
        "demos",
    )
    return repo


def run(repo: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, [*args, "--repo", str(repo), "--now", NOW.isoformat()])


def test_democtl_render_names_file_field_and_rule_and_writes_nothing(state_repo: Path) -> None:
    result = run(state_repo, "render")
    assert result.exit_code == 1, result.output
    assert "rendered/demo-acme01/source.yaml: does not match its schema:" in result.output
    assert "spec.url:" in result.output
    assert "Traceback" not in result.output
    # nothing of the broken demo is written (only the index, which lists no demo yet)
    assert [p.name for p in (state_repo / "rendered").iterdir()] == ["kustomization.yaml"]


def test_democtl_render_check_fails_on_a_schema_violation(state_repo: Path) -> None:
    result = run(state_repo, "render", "--check")
    assert "spec.url:" in result.output
    assert result.exit_code == 1, result.output
