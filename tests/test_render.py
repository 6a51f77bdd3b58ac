"""Rendering: goldens, schema validation of every object, the option matrix, injection,
determinism, the write diff, `democtl render [--check]` on a real git repository and the
cluster wiring."""

from __future__ import annotations

import copy
import functools
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.manifests import ManifestSchemas, validate_rendered
from reconciler.model import (
    Branding,
    Demo,
    DemoMetadata,
    DemoSpec,
    DemoStatus,
    DemoType,
    Seed,
    SeedSize,
    Settings,
)
from reconciler.quantity import parse_quantity
from reconciler.render import (
    SECRET_KEYS,
    RenderError,
    RenderInput,
    common_labels,
    environment,
    index_write,
    parse_documents,
    render_demo,
    render_many,
    rendered_writes,
    yaml_quote,
)
from reconciler.validate import expiry_of, load_demo, load_settings

PROJECT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
KUBERNETES_VERSION = "1.30"
CREATED = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
SAMPLES = ("demo-acme01", "demo-rocket", "demo-talentco")
CORE_API_VERSIONS = {"v1", "networking.k8s.io/v1"}
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"

# --- helpers ---------------------------------------------------------------------------


def load_project_settings(gitops: str = "flux") -> Settings:
    settings, problems = load_settings(
        "reconciler.yaml", (PROJECT / "reconciler.yaml").read_bytes()
    )
    assert settings is not None, problems
    return settings.model_copy(update={"gitops": gitops})


def sample(demo_id: str) -> Demo:
    loaded = load_demo(
        f"demos/{demo_id}.yaml", (PROJECT / "demos" / f"{demo_id}.yaml").read_bytes()
    )
    assert loaded.demo is not None, loaded.problems
    return loaded.demo


def status_for(demo: Demo, *, supabase: bool) -> DemoStatus:
    return DemoStatus(
        id=demo.id,
        namespace=demo.id,
        demoType=demo.spec.type,
        profile=demo.spec.profile,
        phase="creating",
        createdBy=demo.spec.owner,
        createdAt=CREATED,
        expiresAt=CREATED + timedelta(hours=2),
        specHash=demo.spec_hash(),
        supabase={
            "projectRef": "abcdefghijklmnop",
            "url": "https://abcdefghijklmnop.supabase.co",
            "anonKey": "eyJhbGciOiJIUzI1NiJ9.anon.publishable",
        }
        if supabase
        else {},
    )


def docs_of(files: Mapping[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    """Parsed documents by file name; a fresh copy each call, parsed once per content."""
    return copy.deepcopy(_parsed(tuple(files.items())))


@functools.lru_cache(maxsize=64)
def _parsed(items: tuple[tuple[str, bytes], ...]) -> dict[str, list[dict[str, Any]]]:
    return {name: parse_documents(content.decode()) for name, content in items}


def objects(files: Mapping[str, bytes]) -> list[dict[str, Any]]:
    return [d for name, ds in docs_of(files).items() if name != "kustomization.yaml" for d in ds]


def find(files: Mapping[str, bytes], kind: str) -> dict[str, Any]:
    return next(d for d in objects(files) if d["kind"] == kind)


def values_of(files: Mapping[str, bytes]) -> dict[str, Any]:
    release = docs_of(files)["release.yaml"][0]
    if release["kind"] == "HelmRelease":
        return dict(release["spec"]["values"])
    return dict(release["spec"]["source"]["helm"]["valuesObject"])


@pytest.fixture(scope="module")
def schemas() -> ManifestSchemas:
    # the packaged schemas democtl renders against (reconciler/manifest_schemas)
    return ManifestSchemas()


# --- goldens and schemas on the samples ------------------------------------------------

GOLDEN_CASES = [
    pytest.param(
        demo_id, flavour, supabase, id=f"{flavour}-{demo_id}-{'ready' if supabase else 'new'}"
    )
    for demo_id in SAMPLES
    for flavour, supabase in (("flux", False), ("flux", True), ("argo", False), ("argo", True))
]


def render_sample(demo_id: str, flavour: str, supabase: bool) -> dict[str, bytes]:
    settings = load_project_settings(flavour)
    demo = sample(demo_id)
    return render_demo(
        demo,
        settings,
        expires_at=expiry_of(demo, settings, CREATED),
        status=status_for(demo, supabase=supabase),
    )


@pytest.mark.parametrize("demo_id, flavour, supabase", GOLDEN_CASES)
def test_golden_render(demo_id: str, flavour: str, supabase: bool) -> None:
    files = render_sample(demo_id, flavour, supabase)
    folder = GOLDEN / f"{flavour}-{'ready' if supabase else 'new'}" / demo_id
    if REGENERATE:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)
    expected = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert files == expected


@pytest.mark.parametrize("demo_id, flavour, supabase", GOLDEN_CASES)
def test_samples_pass_kubernetes_validate_strict_and_crd_schemas(
    demo_id: str, flavour: str, supabase: bool, schemas: ManifestSchemas
) -> None:
    files = render_sample(demo_id, flavour, supabase)
    checked = set()
    for doc in objects(files):
        if doc["apiVersion"] in CORE_API_VERSIONS:
            assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked.add(doc["kind"])
    assert {"Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy"} <= checked
    assert validate_rendered(files, schemas) == []


def test_crd_and_core_validators_refuse_what_kubernetes_validate_refuses(
    schemas: ManifestSchemas,
) -> None:
    files = render_sample("demo-talentco", "flux", True)
    refused = 0
    for doc in objects(files):
        for mutate in (
            lambda d: d["metadata"].__setitem__("unknownField", "x"),
            lambda d: d["metadata"]["labels"].__setitem__("number", 5),
            lambda d: d.setdefault("spec", {}).__setitem__("unknownField", True),
        ):
            bad = copy.deepcopy(doc)
            mutate(bad)
            assert schemas.errors(bad), (doc["kind"], bad)
            if doc["apiVersion"] in CORE_API_VERSIONS:
                with pytest.raises(kubernetes_validate.ValidationError):
                    kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
            refused += 1
    assert refused == 3 * len(objects(files))


def test_helmrelease_with_unknown_nested_field_is_refused(schemas: ManifestSchemas) -> None:
    release = find(render_sample("demo-acme01", "flux", False), "HelmRelease")
    release["spec"]["valuesFrom"][0]["optionl"] = True
    assert any("optionl" in e for e in schemas.errors(release))
    release = find(render_sample("demo-acme01", "flux", False), "HelmRelease")
    release["spec"]["values"]["anything"] = {"goes": True}  # values preserve unknown fields
    assert schemas.errors(release) == []


# --- the option matrix -----------------------------------------------------------------

BRANDINGS = {
    "plain": None,
    "branded": Branding(
        companyName='Acme: "Staffing" #1',
        primaryColor="#0055ff",
        logoUrl="https://cdn.example.com/a.svg",
    ),
    "name-only": Branding(companyName="Zeta"),
}
LABELS = {"none": {}, "labels": {"team": "sales", "example.com/cost-center": "cc-12"}}
MATRIX = list(
    itertools.product(
        list(DemoType),
        ("small", "load-testing"),
        ("flux", "argo"),
        BRANDINGS,
        LABELS,
        list(SeedSize),
        (False, True),
    )
)


def matrix_demo(type_: DemoType, profile: str, branding: str, labels: str, seed: SeedSize) -> Demo:
    return Demo.model_validate(
        {
            "apiVersion": "demos.splits.network/v1",
            "kind": "Demo",
            "metadata": {"name": f"demo-{type_.value[:5]}-{profile[:4]}", "labels": LABELS[labels]},
            "spec": {
                "type": type_.value,
                "profile": profile,
                "owner": "sam@splits.network",
                "ttl": "2h",
                "seed": {"size": seed.value},
                **(
                    {"branding": BRANDINGS[branding].model_dump(exclude_none=True)}
                    if BRANDINGS[branding]
                    else {}
                ),
            },
        }
    )


def test_matrix_renders_valid_manifests_for_every_type_profile_flavour_and_option(
    schemas: ManifestSchemas,
) -> None:
    assert len(MATRIX) == 3 * 2 * 2 * 3 * 2 * 3 * 2
    settings_by_flavour = {f: load_project_settings(f) for f in ("flux", "argo")}
    for type_, profile, flavour, branding, labels, seed, supabase in MATRIX:
        settings = settings_by_flavour[flavour]
        demo = matrix_demo(type_, profile, branding, labels, seed)
        expires = CREATED + timedelta(hours=2)
        files = render_demo(
            demo, settings, expires_at=expires, status=status_for(demo, supabase=supabase)
        )
        case = (type_, profile, flavour, branding, labels, seed, supabase)
        parsed = [d for docs in _parsed(tuple(files.items())).values() for d in docs]
        assert validate_rendered(parsed, schemas) == [], case
        check_semantics(demo, settings, files, expires, supabase)


def check_semantics(
    demo: Demo, settings: Settings, files: dict[str, bytes], expires: datetime, supabase: bool
) -> None:
    all_docs = docs_of(files)
    assert all_docs["kustomization.yaml"][0]["resources"] == sorted(
        n for n in files if n != "kustomization.yaml"
    )
    for doc in objects(files):
        assert common_labels(demo, settings.ownerId).items() <= doc["metadata"]["labels"].items(), (
            doc["kind"]
        )
    namespace = find(files, "Namespace")
    assert namespace["metadata"]["name"] == demo.id
    assert demo.metadata.labels.items() <= namespace["metadata"]["labels"].items()
    assert namespace["metadata"]["annotations"] == {
        "demos.splits.network/owner": demo.spec.owner,
        "demos.splits.network/expires-at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    profile = settings.profiles[demo.spec.profile]
    hard = find(files, "ResourceQuota")["spec"]["hard"]
    assert parse_quantity(hard["limits.cpu"]) == profile.cpu_cores
    assert parse_quantity(hard["requests.memory"]) == profile.memory_bytes
    assert int(hard["pods"]) == profile.pods
    policies = {d["metadata"]["name"]: d for d in all_docs["networkpolicy.yaml"]}
    assert policies["default-deny"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policies["allow-ingress"]["spec"]["ingress"][0]["from"][1]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": settings.kubernetes.ingressNamespace}
    }
    values = values_of(files)
    env = values["env"]
    assert env["DEMO_MODE"] == "true" and env["DEMO_INSTANCE_ID"] == demo.id
    assert env["NODE_ENV"] == "demo" and env["LOG_LEVEL"] == "info"
    assert env["CLERK_PUBLISHABLE_KEY"] == settings.clerk[demo.spec.type]
    for flag in ("STRIPE_WEBHOOK_ENABLED", "RESEND_ENABLED", "WEBHOOKS_ENABLED"):
        assert env[flag] == "false"
    # never inline, whatever the status knows: both flavours read them from the Secret
    assert "SUPABASE_URL" not in env and "SUPABASE_ANON_KEY" not in env
    assert values["supabase"]["existingSecret"] == settings.kubernetes.secretName
    assert sorted(values["supabase"]["secretKeys"].values()) == sorted(SECRET_KEYS)
    assert values["redis"]["enabled"] and values["rabbitmq"]["enabled"]
    assert values["ingress"]["hosts"]["portal"] == settings.url_for("portal", demo.id)
    assert values["ingress"]["hosts"]["candidate"] == settings.url_for("candidate", demo.id)
    assert set(values["ingress"]["tls"][0]["hosts"]) >= {
        settings.url_for("portal", demo.id),
        settings.url_for("candidate", demo.id),
    }
    branding = demo.spec.branding
    assert values["branding"]["enabled"] is (branding is not None)
    if branding is not None:
        assert values["branding"].get("companyName") == branding.companyName
        assert values["branding"].get("logoUrl") == branding.logoUrl
    services = values["services"]
    limits_cpu = sum(
        parse_quantity(s["resources"]["limits"]["cpu"]) * s["replicas"] for s in services.values()
    )
    limits_memory = sum(
        parse_quantity(s["resources"]["limits"]["memory"]) * s["replicas"]
        for s in services.values()
    )
    assert limits_cpu <= profile.cpu_cores and limits_memory <= profile.memory_bytes
    assert sum(s["replicas"] for s in services.values()) <= profile.pods
    for service in services.values():
        resources = service["resources"]
        for key in ("cpu", "memory"):
            assert parse_quantity(resources["requests"][key]) <= parse_quantity(
                resources["limits"][key]
            )
            assert parse_quantity(resources["requests"][key]) > Decimal(0)
    if settings.gitops == "flux":
        release = find(files, "HelmRelease")
        refs = release["spec"]["valuesFrom"]
        assert {r["valuesKey"] for r in refs} == {"SUPABASE_URL", "SUPABASE_ANON_KEY"}
        assert all(r["name"] == settings.kubernetes.secretName for r in refs)
        assert all("optional" not in r for r in refs)  # Flux waits for the Secret
    else:
        application = find(files, "Application")
        # after the namespace, quota, limits and policies (wave 0, the default)
        assert application["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "1"}
        assert all(
            "argocd.argoproj.io/sync-wave" not in (d["metadata"].get("annotations") or {})
            for d in objects(files)
            if d["kind"] != "Application"
        )


def scalars(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in scalars(v, (*path, str(k)))]
    if isinstance(node, list):
        return [x for v in node for x in scalars(v, (*path, "[]"))]
    return [(path, node)]


def test_secret_is_referenced_by_name_and_key_only() -> None:
    """No Secret object, no data: the credentials appear only as references by key name."""
    for demo_id, flavour, supabase in [c.values for c in GOLDEN_CASES]:
        files = render_sample(demo_id, flavour, supabase)
        assert "Secret" not in {d["kind"] for d in objects(files)}
        for doc in objects(files):
            for path, value in scalars(doc):
                assert path[-1] not in {"data", "stringData"}
                if value in ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_DB_PASSWORD"):
                    assert path[-2:-1] == ("secretKeys",), path
                if value == "SUPABASE_URL" or value == "SUPABASE_ANON_KEY":
                    assert path[-1] in {"url", "anonKey", "valuesKey"}, path


# --- injection -------------------------------------------------------------------------

PAYLOADS = [
    pytest.param("x\nkind: Secret", id="newline"),
    pytest.param("x\r\n---\r\nkind: Secret", id="crlf-document"),
    pytest.param("x\u2028kind: Secret", id="unicode-line-separator"),
    pytest.param("x\x85kind: Secret", id="nel"),
    pytest.param("{{ settings.clerk }}", id="jinja-expression"),
    pytest.param("{% for x in range(3) %}boom{% endfor %}", id="jinja-statement"),
    pytest.param("{# comment #}", id="jinja-comment"),
    pytest.param("---", id="document-marker"),
    pytest.param("...\n---\napiVersion: v1\nkind: Secret", id="document-end-and-start"),
    pytest.param('"; kind: Secret; x: "', id="double-quotes"),
    pytest.param("'quoted' \\\" back\\slash", id="quotes-and-backslashes"),
    pytest.param("key: value", id="colon"),
    pytest.param("!!python/object/apply:os.system ['id']", id="python-tag"),
    pytest.param("&anchor *alias | > # %TAG", id="yaml-indicators"),
    pytest.param("\t\x00\x1b[31m\x7f", id="control-characters"),
    pytest.param("S\u00f8n \U0001f600 \ufeff", id="unicode"),
]


def crafted_demo(payload: str) -> Demo:
    """A demo built without validation, so that the templates alone must hold the line."""
    return Demo.model_construct(
        apiVersion="demos.splits.network/v1",
        kind="Demo",
        metadata=DemoMetadata.model_construct(name="demo-inject", labels={"team": payload}),
        spec=DemoSpec.model_construct(
            type=DemoType.ENTERPRISE,
            profile="small",
            owner=payload,
            ttl="2h",
            expiresAt=None,
            branding=Branding.model_construct(
                companyName=payload, primaryColor=payload, logoUrl=payload
            ),
            seed=Seed(),
        ),
    )


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("flavour", ["flux", "argo"])
def test_injected_values_land_as_inert_strings(payload: str, flavour: str) -> None:
    settings = load_project_settings(flavour)
    demo = crafted_demo(payload)
    files = render_demo(
        demo, settings, expires_at=CREATED, status=status_for(sample("demo-acme01"), supabase=True)
    )
    # render_demo already refused any unexpected document; check the values round-trip
    kinds = [d["kind"] for d in objects(files)]
    assert "Secret" not in kinds
    assert len(files["release.yaml"].decode().splitlines()) == len(
        render_demo(
            crafted_demo("plain"),
            settings,
            expires_at=CREATED,
            status=status_for(sample("demo-acme01"), supabase=True),
        )["release.yaml"]
        .decode()
        .splitlines()
    )
    namespace = find(files, "Namespace")
    assert namespace["metadata"]["annotations"]["demos.splits.network/owner"] == payload
    assert namespace["metadata"]["labels"]["team"] == payload
    branding = values_of(files)["branding"]
    assert branding == {
        "enabled": True,
        "companyName": payload,
        "primaryColor": payload,
        "logoUrl": payload,
    }
    assert values_of(files)["demo"]["owner"] == payload


@pytest.mark.parametrize("payload", PAYLOADS)
def test_validation_refuses_or_accepts_payload_and_accepted_ones_render_inert(
    payload: str,
) -> None:
    text = yaml.safe_dump(
        {
            "apiVersion": "demos.splits.network/v1",
            "kind": "Demo",
            "metadata": {"name": "demo-inject"},
            "spec": {
                "type": "startup",
                "owner": payload,
                "ttl": "2h",
                "branding": {"companyName": payload},
            },
        },
        allow_unicode=True,
    )
    loaded = load_demo("demos/demo-inject.yaml", text.encode())
    if loaded.demo is None:
        assert loaded.problems and loaded.problems[0].field.startswith("spec.")
        return
    # the YAML file may fold some characters on its own (NEL reads back as a space)
    owner = loaded.demo.spec.owner
    assert not any(c in owner for c in "\n\r\x00\x1b\x7f\x85\u2028"), owner
    assert not any(d in owner for d in ("{{", "{%", "{#")), owner
    files = render_demo(loaded.demo, load_project_settings(), expires_at=CREATED, status=None)
    assert values_of(files)["branding"]["companyName"] == owner
    assert (
        find(files, "Namespace")["metadata"]["annotations"]["demos.splits.network/owner"] == owner
    )


def test_demo_labels_cannot_pose_as_system_labels() -> None:
    demo = sample("demo-acme01")
    labels = {
        "kubernetes.io/metadata.name": "ingress-nginx",
        "app.kubernetes.io/managed-by": "someone-else",
        "pod-security.kubernetes.io/enforce": "privileged",
        "demos.splits.network/id": "demo-other",
        "team": "sales",
    }
    crafted = demo.model_copy(
        update={"metadata": DemoMetadata.model_construct(name=demo.id, labels=labels)}
    )
    files = render_demo(crafted, load_project_settings(), expires_at=CREATED, status=None)
    got = find(files, "Namespace")["metadata"]["labels"]
    assert "kubernetes.io/metadata.name" not in got
    assert got["app.kubernetes.io/managed-by"] == "democtl"
    assert got["pod-security.kubernetes.io/enforce"] == "baseline"
    assert got["demos.splits.network/id"] == demo.id
    assert got["team"] == "sales"


def test_demo_id_with_yaml_syntax_is_refused_by_validation() -> None:
    text = (
        b"apiVersion: demos.splits.network/v1\nkind: Demo\nmetadata:\n  name: 'demo-a: b'\n"
        b"spec: {type: startup, owner: a@b.c}\n"
    )
    loaded = load_demo("demos/demo-a.yaml", text)
    assert loaded.demo is None and any(p.field == "metadata.name" for p in loaded.problems)


def test_yaml_quote_round_trips_every_character_class() -> None:
    text = "".join(chr(c) for c in range(0, 0x3000)) + "\U0001f600\ufeff\ufffe\uffff"
    text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)
    assert yaml.safe_load(f"key: {yaml_quote(text)}") == {"key": text}
    assert "\n" not in yaml_quote(text)
    assert yaml.safe_load(yaml_quote({"a": [1, True, None, "x: y"]})) == {
        "a": [1, True, None, "x: y"]
    }


def test_templates_cannot_print_a_value_without_the_filter(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("name: {{ value }}\n")
    env = environment(tmp_path)
    with pytest.raises(RenderError, match="without the yq filter"):
        env.get_template("bad.j2").render(value="x")
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing | yq }}").render()


# --- determinism and writes ------------------------------------------------------------


def test_rendering_is_deterministic() -> None:
    settings = load_project_settings()
    inputs = [
        RenderInput(sample(i), CREATED + timedelta(hours=2), status_for(sample(i), supabase=False))
        for i in SAMPLES
    ]
    first = render_many(inputs, settings)
    second = render_many(list(reversed(inputs)), settings)
    assert first == second
    assert list(first) == sorted(first)
    assert all(list(files) == sorted(files) for files in first.values())


def test_only_the_expiry_changes_the_output() -> None:
    settings = load_project_settings()
    demo = sample("demo-acme01")
    base = render_demo(demo, settings, expires_at=CREATED, status=None)
    later = render_demo(demo, settings, expires_at=CREATED + timedelta(hours=1), status=None)
    assert {n for n in base if base[n] != later[n]} == {"namespace.yaml", "release.yaml"}
    ready = render_demo(demo, settings, expires_at=CREATED, status=status_for(demo, supabase=True))
    # Flux reads the Supabase values from the Secret: provisioning progress changes no byte
    assert ready == base
    # Argo CD too: its Application is there from the first render, reading the Secret
    argo = load_project_settings("argo")
    new = render_demo(demo, argo, expires_at=CREATED, status=None)
    ready = render_demo(demo, argo, expires_at=CREATED, status=status_for(demo, supabase=True))
    assert ready == new and "release.yaml" in new


@pytest.mark.parametrize(
    "existing, desired, keep, expected",
    [
        pytest.param(
            {},
            {"demo-a": {"x.yaml": b"1"}},
            (),
            {"rendered/demo-a/x.yaml": b"1"},
            id="new-demo-is-written",
        ),
        pytest.param(
            {"rendered/demo-a/x.yaml": b"1"},
            {"demo-a": {"x.yaml": b"1"}},
            (),
            {},
            id="unchanged-is-absent",
        ),
        pytest.param(
            {"rendered/demo-a/x.yaml": b"1"},
            {"demo-a": {"x.yaml": b"2"}},
            (),
            {"rendered/demo-a/x.yaml": b"2"},
            id="changed-is-written",
        ),
        pytest.param(
            {"rendered/demo-a/x.yaml": b"1", "rendered/demo-a/y.yaml": b"1"},
            {"demo-a": {"x.yaml": b"1"}},
            (),
            {"rendered/demo-a/y.yaml": None},
            id="file-no-longer-rendered-is-removed",
        ),
        pytest.param(
            {"rendered/demo-gone/x.yaml": b"1"},
            {},
            (),
            {"rendered/demo-gone/x.yaml": None},
            id="deleted-demo-is-removed",
        ),
        pytest.param(
            {"rendered/demo-bad/x.yaml": b"1"},
            {},
            ("demo-bad",),
            {},
            id="invalid-demo-keeps-its-output",
        ),
        pytest.param(
            {"rendered/README.md": b"x"}, {}, (), {}, id="files-outside-demo-folders-are-left-alone"
        ),
    ],
)
def test_rendered_writes(
    existing: dict[str, bytes],
    desired: dict[str, dict[str, bytes]],
    keep: tuple[str, ...],
    expected: dict[str, bytes | None],
) -> None:
    assert rendered_writes(existing, desired, keep=keep) == expected


INDEX = "rendered/kustomization.yaml"


def index_listing(writes: dict[str, bytes]) -> list[str] | None:
    return yaml.safe_load(writes[INDEX])["resources"] if INDEX in writes else None


@pytest.mark.parametrize(
    "existing, writes, listed",
    [
        pytest.param({}, {"rendered/demo-a/x.yaml": b"1"}, ["demo-a"], id="first-demo-is-listed"),
        pytest.param(
            {"rendered/demo-a/x.yaml": b"1"},
            {"rendered/demo-a/x.yaml": None},
            [],
            id="last-demo-removed-leaves-an-empty-index-not-no-folder",
        ),
        pytest.param(
            {"rendered/demo-a/x.yaml": b"1", "rendered/demo-b/x.yaml": b"1"},
            {"rendered/demo-a/x.yaml": None},
            ["demo-b"],
            id="removed-demo-leaves-the-index",
        ),
        pytest.param({}, {}, [], id="no-demo-yet-still-has-an-index"),
    ],
)
def test_index_write(
    existing: dict[str, bytes], writes: dict[str, bytes | None], listed: list[str]
) -> None:
    assert index_listing(index_write(existing, writes)) == listed


def test_index_write_is_a_no_op_when_current(schemas: ManifestSchemas) -> None:
    existing = {"rendered/demo-a/x.yaml": b"1"}
    first = index_write(existing, {})
    assert validate_rendered({"kustomization.yaml": first[INDEX]}, schemas) == []
    assert index_write({**existing, **first}, {}) == {}
    empty = index_write({}, {})
    assert validate_rendered({"kustomization.yaml": empty[INDEX]}, schemas) == []


# --- the command on a real git repository ----------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": "2026-11-25T10:00:00Z",
        "GIT_COMMITTER_DATE": "2026-11-25T10:00:00Z",
    }
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout


@pytest.fixture
def state_repo(tmp_path: Path) -> Path:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    repo = tmp_path / "state"
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True, capture_output=True)
    shutil.copy(PROJECT / "reconciler.yaml", repo / "reconciler.yaml")
    shutil.copytree(PROJECT / "demos", repo / "demos")
    git(repo, "checkout", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "demos")
    git(repo, "push", "-q", "origin", "main")
    return repo


def run(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, [*args, "--repo", str(repo), "--now", NOW.isoformat()])


def tree(repo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted((repo / "rendered").rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("flavour", ["flux", "argo"])
def test_render_then_check_is_clean_and_second_render_writes_nothing(
    state_repo: Path, flavour: str, schemas: ManifestSchemas
) -> None:
    settings_file = state_repo / "reconciler.yaml"
    settings_file.write_text(
        settings_file.read_text().replace("gitops: flux", f"gitops: {flavour}")
    )
    before = run(state_repo, "render", "--check")
    assert (
        before.exit_code == 1
        and "out of date: rendered/demo-acme01/namespace.yaml" in before.output
    )

    first = run(state_repo, "render")
    assert first.exit_code == 0, first.output
    written = tree(state_repo)
    assert {p.split("/")[1] for p in written} == {*SAMPLES, "kustomization.yaml"}
    for demo_id in SAMPLES:
        files = {p.rsplit("/", 1)[1]: c for p, c in written.items() if p.split("/")[1] == demo_id}
        assert validate_rendered(files, schemas) == []
        annotations = find(files, "Namespace")["metadata"]["annotations"]
        # ttl counts from the commit that added the file, not from --now
        assert annotations["demos.splits.network/expires-at"].startswith("2026-11-2")
    mtimes = {p: (state_repo / p).stat().st_mtime_ns for p in written}

    check = run(state_repo, "render", "--check")
    assert check.exit_code == 0, check.output
    second = run(state_repo, "render")
    assert second.exit_code == 0 and "0 file(s) changed" in second.output
    assert {p: (state_repo / p).stat().st_mtime_ns for p in written} == mtimes
    assert git(state_repo, "status", "--porcelain", "--", "demos") == ""


def test_render_under_argo_writes_the_release_at_once_and_the_status_changes_nothing(
    state_repo: Path,
) -> None:
    settings_file = state_repo / "reconciler.yaml"
    settings_file.write_text(settings_file.read_text().replace("gitops: flux", "gitops: argo"))
    assert run(state_repo, "render").exit_code == 0
    first = tree(state_repo)
    assert "rendered/demo-acme01/release.yaml" in first
    status = status_for(sample("demo-acme01"), supabase=True)
    (state_repo / "status").mkdir()
    (state_repo / "status/demo-acme01.yaml").write_text(
        yaml.safe_dump(status.model_dump(mode="json"))
    )
    (state_repo / "status/demo-rocket.yaml").write_text("phase: [unreadable\n")
    result = run(state_repo, "render")
    assert result.exit_code == 0, result.output
    # the unreadable status is reported and not trusted; the demo renders as if new
    assert "status/demo-rocket.yaml" in result.output and "not trusted" in result.output
    assert "0 file(s) changed" in result.output
    assert tree(state_repo) == first
    release = parse_documents((state_repo / "rendered/demo-acme01/release.yaml").read_text())[0]
    values = release["spec"]["source"]["helm"]["valuesObject"]
    assert "SUPABASE_URL" not in values["env"]
    assert values["supabase"]["existingSecret"] == load_project_settings().kubernetes.secretName


def test_invalid_demo_keeps_its_output_and_deleted_demo_is_removed(state_repo: Path) -> None:
    assert run(state_repo, "render").exit_code == 0
    kept = tree(state_repo)
    (state_repo / "demos/demo-rocket.yaml").write_text("spec: {type: [\n")
    (state_repo / "demos/demo-acme01.yaml").unlink()
    result = run(state_repo, "render")
    assert result.exit_code == 0, result.output
    assert "not rendered, previous output kept: demo-rocket" in result.output
    after = tree(state_repo)
    assert {p: c for p, c in after.items() if "/demo-rocket/" in p} == {
        p: c for p, c in kept.items() if "/demo-rocket/" in p
    }
    assert not (state_repo / "rendered/demo-acme01").exists()
    assert any("/demo-talentco/" in p for p in after)
    check = run(state_repo, "render", "--check")
    assert check.exit_code == 0, check.output


def test_check_lists_a_hand_edited_file(state_repo: Path) -> None:
    assert run(state_repo, "render").exit_code == 0
    path = state_repo / "rendered/demo-talentco/quota.yaml"
    path.write_text(path.read_text().replace('pods: "20"', 'pods: "99"'))
    result = run(state_repo, "render", "--check")
    assert result.exit_code == 1
    assert "out of date: rendered/demo-talentco/quota.yaml" in result.output
    assert 'pods: "99"' in path.read_text()  # --check wrote nothing


# --- cluster wiring --------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["flux", "argo"])
def test_cluster_wiring_is_valid(flavour: str, schemas: ManifestSchemas) -> None:
    docs = parse_documents((PROJECT / "clusters" / flavour / "democtl.yaml").read_text())
    assert validate_rendered(docs, schemas) == []
    by_kind = {d["kind"]: d for d in docs}
    if flavour == "flux":
        kustomization = by_kind["Kustomization"]
        assert kustomization["spec"]["path"] == "./rendered"
        assert kustomization["spec"]["prune"] is True
        assert (
            kustomization["spec"]["sourceRef"]["name"]
            == by_kind["GitRepository"]["metadata"]["name"]
        )
    else:
        spec = by_kind["ApplicationSet"]["spec"]
        assert spec["generators"][0]["git"]["directories"] == [{"path": "rendered/*"}]
        assert spec["template"]["spec"]["syncPolicy"]["automated"]["prune"] is True


# --- the parser ------------------------------------------------------------------------

YAML_ZOO = [
    pytest.param("a: 1.5\nb: 2026-01-01\nc: 0x1f\nd: yes\ne: ~\nf: !!binary aGk=\n", id="implicit"),
    pytest.param("x: &a {k: v}\ny: *a\nz:\n  <<: *a\n  m: 1\n", id="anchors-and-merge"),
    pytest.param("- 010\n- +5\n- -0\n- .inf\n- True\n- NO\n- 1_000\n", id="yaml11-numbers"),
    pytest.param("--- \n...\n---\na: b\n---\n- c\n", id="several-documents"),
    pytest.param('k: "x\\u2028y\\N\\"z"\n', id="escapes"),
]


@pytest.mark.parametrize("text", YAML_ZOO)
def test_parse_documents_agrees_with_safe_load_all(text: str) -> None:
    assert parse_documents(text) == [d for d in yaml.safe_load_all(text) if d is not None]


def test_parse_documents_agrees_with_safe_load_all_on_every_golden() -> None:
    paths = sorted(GOLDEN.rglob("*.yaml"))
    assert len(paths) >= 18
    for path in paths:
        text = path.read_text()
        assert parse_documents(text) == [d for d in yaml.safe_load_all(text) if d is not None]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: !!python/object/apply:os.system ['id']\n", id="python-tag"),
        pytest.param("? [1, 2]\n: x\n", id="unhashable-key"),
        pytest.param("a: &x [*x]\n", id="recursive"),
        pytest.param("a: b\n  c: d\n", id="bad-indentation"),
    ],
)
def test_parse_documents_refuses_what_safe_load_refuses(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        parse_documents(text)


# --- the load-testing profile's ServiceMonitor -----------------------------------------

SERVICE_MONITOR_CRD = (
    Path(__file__).resolve().parent
    / "contracts/schemas/crds/monitoring.coreos.com/servicemonitors-crd.json"
)


def test_only_a_profile_asking_for_it_renders_a_service_monitor() -> None:
    settings = load_project_settings()
    assert settings.profiles["load-testing"].serviceMonitor
    assert not settings.profiles["small"].serviceMonitor
    load_testing = render_sample("demo-rocket", "flux", True)  # profile load-testing
    small = render_sample("demo-acme01", "flux", True)
    assert "servicemonitor.yaml" not in small
    assert b"servicemonitor.yaml" in load_testing["kustomization.yaml"]
    monitor = find(load_testing, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "demo-rocket"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["demo-rocket"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["relabelings"][0]["replacement"] == "demo-rocket"
    scrape = [
        d
        for d in objects(load_testing)
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "allow-metrics-scrape"
    ]
    [peer] = scrape[0]["spec"]["ingress"][0]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}


def test_the_service_monitor_matches_the_prometheus_operator_crd_schema(
    schemas: ManifestSchemas,
) -> None:
    """Against the contract copy of the CRD itself, independently of the packaged loader."""
    import jsonschema

    crd = json.loads(SERVICE_MONITOR_CRD.read_text())
    assert crd["metadata"]["annotations"]["operator.prometheus.io/version"] == "0.93.0"
    [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    validator = jsonschema.Draft7Validator(v1["schema"]["openAPIV3Schema"])
    monitor = find(render_sample("demo-rocket", "flux", False), "ServiceMonitor")
    assert list(validator.iter_errors(monitor)) == []
    assert schemas.errors(monitor) == []
    for mutate in (
        lambda m: m["spec"]["endpoints"][0].__setitem__("scheme", "gopher"),  # enum http/https
        lambda m: m["spec"]["endpoints"][0]["relabelings"][0].__setitem__("action", "Nope"),
        lambda m: m["spec"].__setitem__("endpoints", "metrics"),  # an array
    ):
        bad = copy.deepcopy(monitor)
        mutate(bad)
        assert list(validator.iter_errors(bad)), bad
        assert schemas.errors(bad), bad
    # unknown fields: the API server prunes them, democtl's strict check refuses them
    bad = copy.deepcopy(monitor)
    bad["spec"]["endpoints"][0]["intervall"] = "30s"
    assert any("intervall" in e for e in schemas.errors(bad))
