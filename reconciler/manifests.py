"""Schema validation of rendered manifests: core kinds, CRD kinds, kustomization.yaml.

Owns `ManifestSchemas` (validators loaded once and cached per kind), the
packaged schema set (`packaged_schemas`) and `validate_rendered`. The schemas
are package data under `manifest_schemas/` (provenance and licences in its
SOURCES.md), found through importlib.resources so that an installed wheel
validates too: core kinds against the strict standalone Kubernetes schemas of
one version (unknown fields fail); Flux and Argo CD kinds against CRD JSON
schemas laid out as `crds/<group>/<kind>_<version>.json` (or a whole CRD as its
project publishes it, `crds/<group>/*-crd.json`: prometheus-operator's
ServiceMonitor), made strict the way
the API server treats structural schemas (unknown fields fail unless a node says
`x-kubernetes-preserve-unknown-fields`), with their metadata checked as a core
ObjectMeta; `kustomization.yaml` against SchemaStore's schema. Rendering calls
this on every document, so a user sees a schema error from democtl, naming the
file and field, before Flux or Argo CD refuses the manifest.

Pure: reads schema files only. May import jsonschema, fastjsonschema and, for
parsing rendered files, `render` (lazily: `render` imports this module).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema

logger = logging.getLogger(__name__)

# Package data, found through importlib.resources so that an installed wheel validates too.
SCHEMAS_DIR = Path(str(resources.files("reconciler") / "manifest_schemas"))
CRD_DIR = SCHEMAS_DIR / "crds"
KUSTOMIZATION_SCHEMA = SCHEMAS_DIR / "kustomization.json"
# The Kubernetes version whose core schemas ship in manifest_schemas/kubernetes/.
KUBERNETES_VERSION = "1.30.0"
_CORE_GROUPS = {"v1": "v1", "networking.k8s.io/v1": "networking-v1"}
_KUSTOMIZE = ("kustomize.config.k8s.io/v1beta1", "Kustomization")
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Kinds rendered per demo get a compiled validator; compiling the 2 MB ApplicationSet
# schema would take longer than validating the one wiring file that holds it.
_COMPILED_KINDS = frozenset(
    {
        ("v1", "Namespace"),
        ("v1", "ResourceQuota"),
        ("v1", "LimitRange"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("source.toolkit.fluxcd.io/v1", "OCIRepository"),
        ("source.toolkit.fluxcd.io/v1", "HelmRepository"),
        ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
        ("argoproj.io/v1alpha1", "Application"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        _KUSTOMIZE,
    }
)


def kubernetes_schema_dir(version: str = KUBERNETES_VERSION) -> Path:
    """The strict standalone core schemas of one Kubernetes version, as packaged."""
    return SCHEMAS_DIR / "kubernetes" / f"v{version}-local-strict"


def strict_crd_schema(node: Any) -> Any:
    """A copy of a CRD schema where objects with declared properties refuse unknown ones."""
    if isinstance(node, list):
        return [strict_crd_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict_crd_schema(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_manifest_schema(group_dir: Path, kind: str, version: str) -> dict[str, Any] | None:
    """The `openAPIV3Schema` of `kind` at `version` from a CustomResourceDefinition in JSON.

    For CRDs copied as their project publishes them (`*-crd.json`, e.g.
    prometheus-operator's), rather than as a catalog's extracted schema.
    """
    if not group_dir.is_dir():
        return None
    for path in sorted(group_dir.glob("*-crd.json")):
        crd = json.loads(path.read_text())
        if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["names"]["kind"] != kind:
            continue
        for served in crd["spec"]["versions"]:
            if served["name"] == version:
                schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
                return schema
    return None


class ManifestSchemas:
    """Validators for every kind democtl renders, built on first use and cached per kind.

    Each kind has two validators over the same schema (references inlined): a
    compiled `fastjsonschema` one for the hot path, and a `jsonschema` one that
    runs only when the first refuses, to list every violation with its path.
    """

    def __init__(
        self,
        crd_dir: Path = CRD_DIR,
        *,
        kustomization_schema: Path | None = KUSTOMIZATION_SCHEMA,
        core_dir: Path | None = None,
    ) -> None:
        self.crd_dir = crd_dir
        self.kustomization_schema = kustomization_schema
        self.core_dir = core_dir if core_dir is not None else kubernetes_schema_dir()
        self._schemas: dict[tuple[str, str], dict[str, Any]] = {}
        self._fast: dict[tuple[str, str], Callable[[Any], Any]] = {}

    @cached_property
    def _definitions(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.core_dir / "_definitions.json").read_text())
        return dict(data["$defs"])

    def _inline(self, node: Any, seen: tuple[str, ...] = ()) -> Any:
        """Replace `$ref`s into the core definitions by their targets; drop descriptions."""
        if isinstance(node, list):
            return [self._inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and "/$defs/" in ref:
            name = ref.rsplit("/", 1)[1]
            if name in seen:  # recursive types (JSONSchemaProps) are not in our kinds
                return {}
            return self._inline(self._definitions[name], (*seen, name))
        return {
            key: self._inline(value, seen)
            for key, value in node.items()
            if key not in {"description", "$id", "$schema"}
        }

    def _load(self, api_version: str, kind: str) -> dict[str, Any] | None:
        if (api_version, kind) == _KUSTOMIZE:
            if self.kustomization_schema is None:
                return None
            data: dict[str, Any] = json.loads(self.kustomization_schema.read_text())
            # its `$id` makes jsonschema fetch the schema from the network to resolve refs
            return {k: v for k, v in data.items() if k != "$id"}
        group = _CORE_GROUPS.get(api_version)
        if group is not None:
            path = self.core_dir / f"{kind.lower()}-{group}.json"
            if not path.is_file():
                return None
            core: dict[str, Any] = self._inline(json.loads(path.read_text()))
            return core
        crd_group, _, version = api_version.rpartition("/")
        path = self.crd_dir / crd_group / f"{kind.lower()}_{version}.json"
        if not crd_group:
            return None
        if path.is_file():
            found: Any = json.loads(path.read_text())
        else:
            found = crd_manifest_schema(self.crd_dir / crd_group, kind, version)
            if found is None:
                return None
        schema: dict[str, Any] = strict_crd_schema(self._inline(found))
        # a CRD schema says only `metadata: {type: object}`; the API server checks ObjectMeta
        schema["properties"]["metadata"] = self._inline({"$ref": f"#/$defs/{_OBJECT_META}"})
        return schema

    def schema(self, api_version: str, kind: str) -> dict[str, Any]:
        key = (api_version, kind)
        found = self._schemas.get(key)
        if found is None:
            found = self._load(api_version, kind)
            if found is None:
                raise LookupError(f"no schema for {kind} ({api_version})")
            self._schemas[key] = found
        return found

    def _fast_validator(self, api_version: str, kind: str) -> Callable[[Any], Any]:
        key = (api_version, kind)
        found = self._fast.get(key)
        if found is None:
            found = fastjsonschema.compile(self.schema(api_version, kind))
            self._fast[key] = found
        return found

    def errors(self, doc: Mapping[str, Any]) -> list[str]:
        """Every schema violation of one object, as `Kind/name: path: message`."""
        api_version, kind = str(doc.get("apiVersion")), str(doc.get("kind"))
        metadata = doc.get("metadata")
        name = metadata.get("name", "?") if isinstance(metadata, Mapping) else "?"
        where = f"{kind}/{name}"
        try:
            schema = self.schema(api_version, kind)
        except LookupError as exc:
            return [f"{where}: {exc}"]
        compiled = (api_version, kind) in _COMPILED_KINDS
        if compiled:
            try:
                self._fast_validator(api_version, kind)(doc)
            except fastjsonschema.JsonSchemaException as exc:
                refusal = f"{where}: {exc}"
            else:
                return []
        detailed = jsonschema.Draft7Validator(schema)
        found = [f"{where}: {_path(e)}: {e.message}" for e in detailed.iter_errors(doc)]
        # should the two validators ever disagree, the compiled one's refusal still counts
        return found or ([refusal] if compiled else [])


@cache
def packaged_schemas() -> ManifestSchemas:
    """The schemas shipped with democtl, one instance per process so compiled validators last."""
    return ManifestSchemas()


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def validate_rendered(
    rendered: Mapping[str, bytes] | Iterable[Mapping[str, Any]],
    schemas: ManifestSchemas | None = None,
) -> list[str]:
    """Schema problems of one demo's rendered files (file name -> bytes) or of parsed objects.

    `schemas` defaults to the packaged ones.
    """
    schemas = schemas if schemas is not None else packaged_schemas()
    if isinstance(rendered, Mapping):
        from reconciler.render import parse_documents  # render imports this module

        problems: list[str] = []
        for file, content in rendered.items():
            for doc in parse_documents(content.decode()):
                problems += [f"{file}: {p}" for p in schemas.errors(doc)]
        return problems
    return [p for doc in rendered for p in schemas.errors(doc)]
