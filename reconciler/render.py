"""Rendering demos into the Kubernetes manifests that Flux or Argo CD syncs from `rendered/<id>/`.

Owns the Jinja environment, the per-demo manifest set, the structural check of
every rendered document and the diff between what is on disk and what should be
(`rendered_writes`). Pure: no git, no file writes, no clock. Templates are read
from the package's `templates/` (package data) once per process. Imports the model
and `manifests` (the schema check every rendered document also passes).

Safety: every value reaches the templates through the `yq` filter, which emits a
YAML double-quoted scalar (or a literal bool, int or null); the environment's
`finalize` hook refuses any `{{ }}` output that did not pass through it, so a
template cannot interpolate a raw value by mistake. Every rendered document is
parsed back with the safe YAML loader and checked for the kinds and labels it
must have, and against its Kubernetes, CRD or kustomization schema (`manifests`);
a mismatch raises `RenderError`, so a reconcile, `democtl render` and
`democtl render --check` all refuse a manifest Flux or Argo CD would refuse.

Waiting for Supabase: the Supabase URL and anon key exist only once the project
does, and neither flavour renders them: the release's bytes never depend on the
status, so provisioning progress changes nothing in `rendered/` (no commit of its
own, see `status.quiet_change`) and a running release is not upgraded for a copy of
values it already has; the status file shows both values once the demo is ready.
For Flux, the HelmRelease takes them through `valuesFrom` the credentials Secret
(named `settings.kubernetes.secretName`, written by democtl into the demo
namespace) without `optional`, so helm-controller waits until that Secret exists.
Argo CD has no `valuesFrom`: its Application is rendered from the first render with
`supabase.existingSecret` naming that Secret (the chart contract), in sync wave 1
after the namespace, quota, limits and network policies of wave 0, and its pods
wait in CreateContainerConfigError until democtl has written the Secret.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import jinja2
import yaml

from reconciler.manifests import ManifestSchemas, packaged_schemas
from reconciler.marks import DEMO_ID_LABEL, MANAGED_BY_LABEL, OWNER_ID_LABEL
from reconciler.model import Demo, DemoStatus, Settings, reserved_label_key

logger = logging.getLogger(__name__)

RENDERED_DIR = "rendered"
# Package data, found through importlib.resources so that an installed wheel renders too.
TEMPLATES_DIR = Path(str(resources.files("reconciler") / "templates"))

SECRET_KEYS = (
    "SUPABASE_URL",
    "SUPABASE_ANON_KEY",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_DB_PASSWORD",
)

LABEL_PREFIX = "demos.splits.network"
MANAGED_BY = "democtl"  # marks.MANAGED_BY
PART_OF = "splits-network"

# The platform's workloads: (name, share of the profile's budget per replica, scales).
# Stateless services get more replicas on bigger profiles; Redis and RabbitMQ stay single.
PLATFORM_SERVICES: tuple[tuple[str, int, bool], ...] = (
    ("api-gateway", 3, True),
    ("ats-service", 3, True),
    ("candidate", 2, True),
    ("identity-service", 2, True),
    ("network-service", 2, True),
    ("notification-service", 1, True),
    ("portal", 2, True),
    ("rabbitmq", 2, False),
    ("redis", 1, False),
)
# Services may use this share of the quota; the rest fits migration and seed Jobs
# that run under the LimitRange defaults.
SERVICE_BUDGET = Decimal("0.75")
LIMIT_DEFAULT = {"cpu": "200m", "memory": "256Mi"}
LIMIT_DEFAULT_REQUEST = {"cpu": "100m", "memory": "128Mi"}
_MI = Decimal(2) ** 20

_DOC_CORE = ("v1", "networking.k8s.io/v1")
_KUSTOMIZE = ("kustomize.config.k8s.io/v1beta1", "Kustomization")


class RenderError(ValueError):
    """A rendered document that does not parse or does not have the expected shape."""

    def __init__(self, demo_id: str, file: str, message: str) -> None:
        super().__init__(f"rendered/{demo_id}/{file}: {message}")
        self.demo_id = demo_id
        self.file = file


class RenderInput(NamedTuple):
    """One demo to render: the valid demo, its expiry and its status when there is one."""

    demo: Demo
    expires_at: datetime
    status: DemoStatus | None = None


# --- safe scalars ----------------------------------------------------------------------


class _Quoted(str):
    """Text that went through `yq`: the only thing `finalize` lets into a template."""

    __slots__ = ()


# Characters that PyYAML (YAML 1.1) would treat as line breaks, reject, or that are
# invisible: escaped so that the scalar stays on one line and parses to the same text.
_ESCAPE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff"\\\\]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in {'"', "\\"}:
        return "\\" + char
    return f"\\u{ord(char):04x}"


def yaml_quote(value: object) -> str:
    """A YAML scalar (or flow collection) that parses back to exactly `value`.

    Strings become double-quoted scalars with every break-like or control character
    escaped, so no value can end a line, open a document or carry a tag.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + _ESCAPE.sub(_escape_char, value) + '"'
    if isinstance(value, Mapping):
        items = ", ".join(f"{yaml_quote(str(k))}: {yaml_quote(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_quote(v) for v in value) + "]"
    raise TypeError(f"cannot render a {type(value).__name__} as a YAML value")


def _yq(value: object) -> _Quoted:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises here, naming the missing variable
    return _Quoted(yaml_quote(value))


def _finalize(value: object) -> object:
    if isinstance(value, _Quoted):
        return value
    raise RenderError("?", "?", f"template printed {value!r} without the yq filter")


@cache
def environment(templates: Path = TEMPLATES_DIR) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - YAML, not HTML; values are quoted by yq
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["yq"] = _yq
    return env


# --- the manifest set ------------------------------------------------------------------


@dataclass(frozen=True)
class _Expect:
    """What one rendered file must hold: (apiVersion, kind) per document, in order."""

    template: str
    docs: tuple[tuple[str, str], ...]


def _expected_files(settings: Settings, context: Mapping[str, Any]) -> dict[str, _Expect]:
    files = {
        "namespace.yaml": _Expect("k8s/namespace.yaml.j2", (("v1", "Namespace"),)),
        "quota.yaml": _Expect("k8s/quota.yaml.j2", (("v1", "ResourceQuota"),)),
        "limitrange.yaml": _Expect("k8s/limitrange.yaml.j2", (("v1", "LimitRange"),)),
        "networkpolicy.yaml": _Expect(
            "k8s/networkpolicy.yaml.j2", (("networking.k8s.io/v1", "NetworkPolicy"),) * 3
        ),
    }
    if context["service_monitor"]:
        files["servicemonitor.yaml"] = _Expect(
            "k8s/servicemonitor.yaml.j2",
            (
                ("monitoring.coreos.com/v1", "ServiceMonitor"),
                ("networking.k8s.io/v1", "NetworkPolicy"),
            ),
        )
    if settings.gitops == "flux":
        source_kind = "OCIRepository" if context["chart"]["oci"] else "HelmRepository"
        files["source.yaml"] = _Expect(
            "flux/source.yaml.j2", (("source.toolkit.fluxcd.io/v1", source_kind),)
        )
        files["release.yaml"] = _Expect(
            "flux/release.yaml.j2", (("helm.toolkit.fluxcd.io/v2", "HelmRelease"),)
        )
    else:
        files["release.yaml"] = _Expect(
            "argo/release.yaml.j2", (("argoproj.io/v1alpha1", "Application"),)
        )
    return files


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu(millicores: Decimal) -> str:
    return f"{int(millicores)}m"


def _memory(mebibytes: Decimal) -> str:
    return f"{int(mebibytes)}Mi"


def platform_services(settings: Settings, profile_name: str) -> list[dict[str, Any]]:
    """Replicas, requests and limits per service; limits sum to within the profile's quota."""
    profile = settings.profiles[profile_name]
    cores = profile.cpu_cores
    scaled_replicas = max(1, min(3, int(cores // 2)))
    replicas = {name: scaled_replicas if scales else 1 for name, _, scales in PLATFORM_SERVICES}
    if sum(replicas.values()) > profile.pods * SERVICE_BUDGET:
        replicas = dict.fromkeys(replicas, 1)
    shares = sum(weight * replicas[name] for name, weight, _ in PLATFORM_SERVICES)
    cpu_budget = cores * 1000 * SERVICE_BUDGET
    memory_budget = profile.memory_bytes / _MI * SERVICE_BUDGET
    services = []
    for name, weight, _ in PLATFORM_SERVICES:
        cpu = (cpu_budget * weight / shares).to_integral_value(ROUND_FLOOR)
        memory = (memory_budget * weight / shares).to_integral_value(ROUND_FLOOR)
        services.append(
            {
                "name": name,
                "replicas": replicas[name],
                "limits": {"cpu": _cpu(cpu), "memory": _memory(memory)},
                "requests": {
                    "cpu": _cpu((cpu / 2).to_integral_value(ROUND_FLOOR)),
                    "memory": _memory((memory / 2).to_integral_value(ROUND_FLOOR)),
                },
            }
        )
    return services


# Where other demos' pods, nodes and cloud metadata live: never reachable through the
# "internet" egress blocks, whatever ranges the settings open (RFC 1918, link-local,
# IPv6 unique-local and link-local).
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(c)
    for c in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)


def _excepting_private(cidr: str) -> dict[str, Any]:
    network = ipaddress.ip_network(cidr)
    excepted = [
        str(p)
        for p in PRIVATE_RANGES
        if p.version == network.version and p.subnet_of(network)  # type: ignore[arg-type]
    ]
    return {"cidr": cidr, "except": excepted}


def egress_blocks(settings: Settings) -> dict[str, Any]:
    """The network policy's egress peers, from `kubernetes.networkPolicy`."""
    policy = settings.kubernetes.networkPolicy
    supabase = policy.supabase
    return {
        "dns_selectors": [
            {"namespace": s.namespace, "pod_labels": dict(sorted(s.podLabels.items()))}
            for s in policy.dns.selectors
        ],
        "dns_cidrs": list(policy.dns.cidrs),
        "internet": [_excepting_private(c) for c in [*supabase.ipv4, *supabase.ipv6]],
        "ports": sorted(set(supabase.ports)),
    }


def common_labels(demo: Demo, owner_id: str) -> dict[str, str]:
    """The labels on every rendered object, in a fixed order: the ownership mark
    (managed-by, demo id, owner id: reconciler/marks.py) among them."""
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/instance": demo.id,
        DEMO_ID_LABEL: demo.id,
        OWNER_ID_LABEL: owner_id,
        f"{LABEL_PREFIX}/type": str(demo.spec.type),
        f"{LABEL_PREFIX}/profile": demo.spec.profile,
    }


def status_inputs(settings: Settings, status: DemoStatus | None) -> tuple[str | None, ...]:
    """What of a status a demo's rendered files depend on: nothing, under either flavour
    (the HelmRelease and the Application read the Supabase values from the Secret).
    Equal inputs, equal files; the one place a status field would join the digest."""
    return ()


def _context(demo: Demo, settings: Settings, expires_at: datetime) -> dict[str, Any]:
    labels = common_labels(demo, settings.ownerId)
    # validation refuses reserved keys; dropping them here too keeps a demo built without
    # validation (model_construct) from posing as a system label
    namespace_labels = {
        k: v for k, v in sorted(demo.metadata.labels.items()) if not reserved_label_key(k)
    }
    namespace_labels.update(labels)  # ours win over a demo label of the same key
    namespace_labels["pod-security.kubernetes.io/enforce"] = "baseline"
    branding = demo.spec.branding
    profile = settings.profiles[demo.spec.profile]
    hosts = {kind: settings.url_for(kind, demo.id) for kind in ("portal", "candidate", "api")}
    repository = settings.chart.repository.rstrip("/")
    oci = repository.startswith("oci://")
    env: dict[str, str] = {
        "CLERK_PUBLISHABLE_KEY": settings.clerk[demo.spec.type],
        "DEMO_INSTANCE_ID": demo.id,
        "DEMO_MODE": "true",
        "LOG_LEVEL": "info",
        "NODE_ENV": "demo",
        "RESEND_ENABLED": "false",
        "STRIPE_WEBHOOK_ENABLED": "false",
        "WEBHOOKS_ENABLED": "false",
    }
    return {
        "id": demo.id,
        "namespace": demo.id,
        "labels": labels,
        "namespace_labels": namespace_labels,
        "annotations": {
            f"{LABEL_PREFIX}/owner": demo.spec.owner,
            f"{LABEL_PREFIX}/expires-at": _format_time(expires_at),
        },
        "demo": {
            "id": demo.id,
            "type": str(demo.spec.type),
            "profile": demo.spec.profile,
            "owner": demo.spec.owner,
            "expiresAt": _format_time(expires_at),
            "seedSize": str(demo.spec.seed.size),
        },
        "quota": {"cpu": str(profile.cpu), "memory": str(profile.memory), "pods": profile.pods},
        "limit_default": LIMIT_DEFAULT,
        "limit_default_request": LIMIT_DEFAULT_REQUEST,
        "kube": settings.kubernetes,
        "service_monitor": settings.profiles[demo.spec.profile].serviceMonitor,
        "egress": egress_blocks(settings),
        "hosts": hosts,
        "tls_secret": f"{demo.id}-tls",
        "env": dict(sorted(env.items())),
        "services": platform_services(settings, demo.spec.profile),
        "branding": {
            "enabled": branding is not None,
            "companyName": branding.companyName if branding else None,
            "primaryColor": branding.primaryColor if branding else None,
            "logoUrl": branding.logoUrl if branding else None,
        },
        "supabase": {
            "secret": settings.kubernetes.secretName,
            "keys": SECRET_KEYS,
        },
        "chart": {
            "oci": oci,
            "repository": repository,
            "argo_repository": repository.removeprefix("oci://"),
            "oci_url": f"{repository}/{settings.chart.name}",
            "name": settings.chart.name,
            "version": settings.chart.version,
            "pull_secret": settings.chart.pullSecret,
        },
    }


def _check(
    demo_id: str, file: str, expect: _Expect, docs: list[Any], labels: Mapping[str, str]
) -> None:
    kinds = tuple(
        (d.get("apiVersion"), d.get("kind")) if isinstance(d, dict) else (None, None) for d in docs
    )
    if kinds != expect.docs:
        raise RenderError(demo_id, file, f"expected documents {expect.docs}, got {kinds}")
    for doc in docs:
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            raise RenderError(demo_id, file, f"{doc['kind']} has no metadata.name")
        got = metadata.get("labels") or {}
        wrong = {k: got.get(k) for k, v in labels.items() if got.get(k) != v}
        if wrong:
            raise RenderError(demo_id, file, f"{doc['kind']} has wrong labels {wrong}")
        if doc["kind"] == "Namespace":
            if metadata["name"] != demo_id:
                raise RenderError(demo_id, file, "the Namespace must be named after the demo")
        elif doc["kind"] != "Application" and metadata.get("namespace") != demo_id:
            raise RenderError(demo_id, file, f"{doc['kind']} is not in namespace {demo_id!r}")


def _kustomization(files: Iterable[str]) -> str:
    resources = "".join(f"  - {yaml_quote(name)}\n" for name in sorted(files))
    # an empty list, not null: the index of a repository with no demo left is still valid
    listed = f"resources:\n{resources}" if resources else "resources: []\n"
    return (
        "# Rendered by democtl. Do not edit: the next render overwrites it.\n"
        f"apiVersion: {_KUSTOMIZE[0]}\nkind: {_KUSTOMIZE[1]}\n{listed}"
    )


_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_DECIMAL = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")


def parse_documents(text: str) -> list[Any]:
    """Every non-empty document of a rendered file, parsed as `yaml.safe_load_all` would.

    The C parser builds the node tree; the common node kinds (str, int, bool, null,
    plain mappings and sequences) are converted here directly, which is several
    times faster than PyYAML's generic constructor, and every other node (floats,
    timestamps, merge keys, unknown tags such as `!!python/object`) goes to the
    SafeConstructor itself, which builds it or refuses it exactly as safe_load does.
    One difference, on purpose: a recursive structure (`&a [*a]`) is refused.
    """
    loader = _Loader(text)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            value = _construct(loader, node, set()) if node is not None else None
            if value is not None:
                docs.append(value)
        return docs
    finally:
        loader.dispose()


def _construct(loader: yaml.SafeLoader, node: yaml.Node, active: set[int]) -> Any:
    tag = node.tag
    if isinstance(node, yaml.ScalarNode):
        value = node.value
        if tag == _TAG + "str":
            return value
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "bool" and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        if tag == _TAG + "int" and _DECIMAL.match(value):
            return int(value)
        return loader.construct_object(node, deep=True)
    if id(node) in active:
        raise yaml.constructor.ConstructorError(
            None, None, "recursive structures are not allowed", node.start_mark
        )
    if isinstance(node, yaml.MappingNode) and tag == _TAG + "map":
        if any(key.tag == _TAG + "merge" for key, _ in node.value):
            return loader.construct_object(node, deep=True)
        active.add(id(node))
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(loader, key_node, active)
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(
                    None, None, "found an unhashable key", key_node.start_mark
                )
            mapping[key] = _construct(loader, value_node, active)
        active.discard(id(node))
        return mapping
    if isinstance(node, yaml.SequenceNode) and tag == _TAG + "seq":
        active.add(id(node))
        items = [_construct(loader, item, active) for item in node.value]
        active.discard(id(node))
        return items
    return loader.construct_object(node, deep=True)


def render_demo(
    demo: Demo,
    settings: Settings,
    *,
    expires_at: datetime,
    status: DemoStatus | None,
    schemas: ManifestSchemas | None = None,
) -> dict[str, bytes]:
    """The files of `rendered/<id>/` for one valid demo, by file name.

    `status` does not reach the output (`status_inputs` is empty under both flavours);
    it stays a parameter so that a status field the output comes to read joins the
    digest in one place.

    Raises RenderError when a rendered document does not parse, has the wrong shape
    or does not match its schema (`schemas`, by default the packaged ones).
    """
    files, _ = render_demo_documents(
        demo, settings, expires_at=expires_at, status=status, schemas=schemas
    )
    return files


# Beside each demo's manifests in rendered/<id>/: the digest of what they were rendered
# from and of the files, so that a fresh process (one `democtl reconcile` per CI run,
# on a fresh checkout) can tell an unchanged demo is current without rendering it.
# Rendering, parsing back and validating is most of a no-op cycle (about 17 ms a
# demo); comparing digests is a few microseconds. Not a YAML file (no `.yaml`), and
# only comment lines in case a tool reads it as one: kustomize reads what
# kustomization.yaml lists, and Argo CD's and Flux's generated kustomizations take
# `*.yaml`, `*.yml` and `*.json` only.
RECORD_FILE = ".render-digest"
_RECORD_HEADER = (
    b"# Written by democtl: what this folder was rendered from, so that an unchanged demo\n"
    b"# is not rendered again. Do not edit: any change makes the next cycle render it.\n"
)

# The modules whose code shapes the output besides the templates: a change to any of
# them (a new label, another way of writing a quantity) must re-render every demo.
_RENDER_CODE = (
    "reconciler.render",
    "reconciler.manifests",
    "reconciler.marks",
    "reconciler.model",
    "reconciler.names",
)
_RENDER_LIBRARIES = ("fastjsonschema", "jsonschema")  # the validators manifests runs


@cache
def renderer_digest() -> str:
    """The digest of everything but the inputs that the output depends on.

    The packaged templates and schemas (a stricter schema must re-check old output),
    the source of the modules that fill them, and the versions of the libraries that
    render, parse and validate: with the inputs, they determine the bytes.
    """
    from importlib.metadata import version

    digest = hashlib.sha256()
    schemas = Path(str(resources.files("reconciler") / "manifest_schemas"))
    for folder in (TEMPLATES_DIR, schemas):
        for top, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(names):
                full = os.path.join(top, name)
                with open(full, "rb") as handle:
                    content = handle.read()
                relative = os.path.relpath(full, folder).replace(os.sep, "/")
                digest.update(f"{folder.name}/{relative}\0".encode())
                digest.update(hashlib.sha256(content).digest())
    for module in _RENDER_CODE:
        source = sys.modules[module].__file__
        assert source is not None  # the package is made of files (an installed wheel too)
        with open(source, "rb") as handle:
            digest.update(f"{module}\0".encode() + hashlib.sha256(handle.read()).digest())
    libraries = (jinja2.__version__, yaml.__version__, *map(version, _RENDER_LIBRARIES))
    digest.update("\0".join(libraries).encode())
    return digest.hexdigest()


def settings_digest(settings: Settings) -> str:
    """The settings' share of `inputs_digest`, computed once per cycle, not once per demo."""
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()


def inputs_digest(
    demo: Demo, settings_key: str, expires_at: datetime, status_values: tuple[str | None, ...]
) -> str:
    """The digest of everything `render_demo` reads: same digest, same bytes.

    Of the status only `status_inputs` reach the output (nothing, under either
    flavour), so a status that moves (health, progress, the Supabase values) leaves
    the digest, and the record in git, unchanged.
    """
    supabase = status_values
    digest = hashlib.sha256(renderer_digest().encode() + b"\0" + settings_key.encode())
    digest.update(b"\0" + demo.model_dump_json().encode())
    digest.update(b"\0" + expires_at.astimezone(UTC).isoformat().encode())
    digest.update(b"\0" + repr(supabase).encode())
    return digest.hexdigest()


def _files_digest(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        if name != RECORD_FILE:
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def record_bytes(inputs: str, files: Mapping[str, bytes]) -> bytes:
    """The record of a folder holding `files`, rendered from the inputs of digest `inputs`."""
    return (
        _RECORD_HEADER
        + f"# inputs sha256:{inputs}\n# files sha256:{_files_digest(files)}\n".encode()
    )


def with_record(inputs: str, files: Mapping[str, bytes]) -> dict[str, bytes]:
    """`files` as `render_demo` gave them, plus their record: what rendered/<id>/ holds."""
    return dict(sorted({**files, RECORD_FILE: record_bytes(inputs, files)}.items()))


def is_current(inputs: str, on_disk: Mapping[str, bytes]) -> bool:
    """Whether `on_disk` (a demo folder's files) is what rendering the inputs of `inputs` gives.

    True when its record names these inputs and the files beside it are the ones it
    was written with: a hand edit of a manifest, a missing record, or inputs that
    changed since make it False, and the demo is rendered afresh.
    """
    record = on_disk.get(RECORD_FILE)
    return record is not None and record == record_bytes(inputs, on_disk)


def _check_schema(demo_id: str, file: str, docs: list[Any], schemas: ManifestSchemas) -> None:
    problems = [p for doc in docs for p in schemas.errors(doc)]
    if problems:
        raise RenderError(demo_id, file, "does not match its schema: " + "; ".join(problems))


def render_demo_documents(
    demo: Demo,
    settings: Settings,
    *,
    expires_at: datetime,
    status: DemoStatus | None,
    schemas: ManifestSchemas | None = None,
) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """`render_demo`, plus the parsed objects, so that callers need not parse again."""
    schemas = schemas if schemas is not None else packaged_schemas()
    context = _context(demo, settings, expires_at)
    env = environment()
    labels = context["labels"]
    out: dict[str, bytes] = {}
    objects: list[dict[str, Any]] = []
    for file, expect in _expected_files(settings, context).items():
        try:
            text = env.get_template(expect.template).render(context)
        except RenderError as exc:
            raise RenderError(demo.id, file, str(exc).split(": ", 1)[-1]) from None
        try:
            docs = parse_documents(text)
        except yaml.YAMLError as exc:
            raise RenderError(demo.id, file, f"does not parse as YAML: {exc}") from None
        _check(demo.id, file, expect, docs, labels)
        _check_schema(demo.id, file, docs, schemas)
        out[file] = text.encode()
        objects.extend(docs)
    kustomization = _kustomization(out)
    docs = parse_documents(kustomization)
    if len(docs) != 1 or docs[0].get("resources") != sorted(out):
        raise RenderError(demo.id, "kustomization.yaml", "does not list the rendered files")
    _check_schema(demo.id, "kustomization.yaml", docs, schemas)
    out["kustomization.yaml"] = kustomization.encode()
    objects.extend(docs)
    logger.debug("%s: rendered %d files for %s", demo.id, len(out), settings.gitops)
    return dict(sorted(out.items())), objects


def template_texts(
    demo: Demo, settings: Settings, *, expires_at: datetime, status: DemoStatus | None
) -> dict[str, str]:
    """The bare template output, unchecked and unparsed: the floor the benchmark compares to."""
    context = _context(demo, settings, expires_at)
    env = environment()
    return {
        file: env.get_template(expect.template).render(context)
        for file, expect in _expected_files(settings, context).items()
    }


def render_many(
    items: Iterable[RenderInput | tuple[Demo, datetime, DemoStatus | None]],
    settings: Settings,
) -> dict[str, dict[str, bytes]]:
    """Render several demos, keyed by demo id."""
    rendered: dict[str, dict[str, bytes]] = {}
    for item in items:
        demo, expires_at, status = item
        rendered[demo.id] = render_demo(demo, settings, expires_at=expires_at, status=status)
    return dict(sorted(rendered.items()))


def rendered_writes(
    existing: Mapping[str, bytes],
    desired: Mapping[str, Mapping[str, bytes]],
    *,
    keep: Iterable[str] = (),
) -> dict[str, bytes | None]:
    """What to write (bytes) or remove (None) to turn `existing` into `desired`.

    `existing` maps repository-relative paths under rendered/ to their bytes;
    `desired` maps demo id to file name to bytes. Files of demos in `keep` (ids
    whose demo file is currently invalid) are left alone whatever `desired` says
    about them. Unchanged files are absent from the result.
    """
    kept = set(keep)
    wanted = {
        f"{RENDERED_DIR}/{demo_id}/{name}": content
        for demo_id, files in desired.items()
        if demo_id not in kept
        for name, content in files.items()
    }
    writes: dict[str, bytes | None] = {}
    for path, content in wanted.items():
        if existing.get(path) != content:
            writes[path] = content
    for path in existing:
        parts = PurePosixPath(path).parts
        # only rendered/<id>/...: files directly under rendered/ are not a demo's
        if len(parts) < 3 or parts[0] != RENDERED_DIR or parts[1] in kept:
            continue
        if path not in wanted:
            writes[path] = None
    return dict(sorted(writes.items()))


INDEX_FILE = f"{RENDERED_DIR}/kustomization.yaml"


def index_write(
    existing: Mapping[str, bytes], writes: Mapping[str, bytes | None]
) -> dict[str, bytes]:
    """`rendered/kustomization.yaml` listing the demo folders that remain after `writes`.

    It always exists, with an empty list when no demo is left: kustomize-controller fails
    a Kustomization whose path is missing ("kustomization path not found") before it
    prunes, so removing the last demo folder (and with it rendered/) would leave that
    demo's namespace running (fluxcd/kustomize-controller,
    internal/controller/kustomization_controller.go). Empty when the index is current.
    """
    after = {path for path in existing if writes.get(path, b"") is not None}
    after |= {path for path, content in writes.items() if content is not None}
    folders = sorted(
        {
            parts[1]
            for parts in (PurePosixPath(path).parts for path in after)
            if len(parts) >= 3 and parts[0] == RENDERED_DIR
        }
    )
    content = _kustomization(folders).encode()
    return {} if existing.get(INDEX_FILE) == content else {INDEX_FILE: content}
