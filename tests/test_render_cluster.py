"""Rendering for the cluster side as Flux and Argo CD behave: private chart registries,
the network policy's DNS and Supabase egress, evaluated against destinations."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from reconciler.manifests import ManifestSchemas, validate_rendered
from reconciler.model import Settings
from reconciler.render import render_demo
from reconciler.validate import expiry_of
from tests.test_render import (
    CREATED,
    CRDS,
    SHARED,
    docs_of,
    find,
    load_project_settings,
    objects,
    sample,
    status_for,
)

pytestmark = pytest.mark.skipif(not CRDS.is_dir(), reason="../shared/schemas not present")


@pytest.fixture(scope="module")
def schemas() -> ManifestSchemas:
    return ManifestSchemas(CRDS, kustomization_schema=SHARED / "schemas" / "kustomization.json")


def with_settings(flavour: str, **changes: dict[str, Any]) -> Settings:
    base = load_project_settings(flavour)
    data = base.model_dump(mode="json", exclude_unset=False)
    for key, value in changes.items():
        data[key] = {**(data.get(key) or {}), **value}
    return Settings.model_validate(data)


def render(settings: Settings, schemas: ManifestSchemas) -> dict[str, bytes]:
    demo = sample("demo-acme01")
    files = render_demo(
        demo,
        settings,
        expires_at=expiry_of(demo, settings, CREATED),
        status=status_for(demo, supabase=True),
    )
    parsed = [d for docs in docs_of(files).values() for d in docs]
    assert validate_rendered(parsed, schemas) == []
    return files


# --- private chart registries -------------------------------------------------------------


@pytest.mark.parametrize(
    "repository, kind",
    [
        pytest.param("oci://ghcr.io/splits-network/charts", "OCIRepository", id="oci"),
        pytest.param("https://charts.example.com", "HelmRepository", id="https"),
    ],
)
def test_pull_secret_is_the_flux_sources_secret_ref(
    repository: str, kind: str, schemas: ManifestSchemas
) -> None:
    settings = with_settings("flux", chart={"repository": repository, "pullSecret": "ghcr-pull"})
    source = find(render(settings, schemas), kind)
    assert source["spec"]["secretRef"] == {"name": "ghcr-pull"}


def test_no_pull_secret_no_secret_ref(schemas: ManifestSchemas) -> None:
    source = find(render(with_settings("flux"), schemas), "OCIRepository")
    assert "secretRef" not in source["spec"]


def test_argo_application_never_names_the_repository_credential(
    schemas: ManifestSchemas,
) -> None:
    # Argo CD matches a repository credential Secret to the Application by URL; the
    # Application has no field for it, so the render must stay valid and unchanged.
    plain = render(with_settings("argo"), schemas)
    private = render(with_settings("argo", chart={"pullSecret": "ghcr-pull"}), schemas)
    assert plain == private
    assert all(o["kind"] != "Secret" for o in objects(private))
