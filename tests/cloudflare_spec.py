"""The Cloudflare DNS contract (tests/contracts/specs, 2024 subset) as JSON Schema validators.

OpenAPI 3.0 is not JSON Schema: `nullable` becomes a "null" type, and in request
bodies the server-assigned fields (`id`, `created_on`, ...) are not required.
The spec keeps Cloudflare's non-standard `4xx`/`4XX` response keys; both are read.
Upstream's 4xx bodies are allOf[success schema, failure envelope], unsatisfiable as
written; the failure envelope is what is checked for them.
The batch endpoint is newer than the spec: its shape comes from the SDK's types
(`RecordBatchParams`, `RecordBatchResponse`: lists of records / of `{id}`), each
item checked against the spec's record schema.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SPEC_PATH = Path(__file__).resolve().parent / "contracts/specs/cloudflare-dns-records.openapi.json"
API_PREFIX = "/client/v4"
# Assigned by the server; required in the record schema, never sent by a client.
SERVER_FIELDS = {"id", "proxiable", "created_on", "modified_on"}


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def _convert(node: Any, *, request: bool) -> Any:
    if isinstance(node, list):
        return [_convert(item, request=request) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _convert(value, request=request) for key, value in node.items()}
    if out.get("nullable") is True and "type" in out:
        out["type"] = [out["type"], "null"]
    if request and isinstance(out.get("required"), list):
        out["required"] = [name for name in out["required"] if name not in SERVER_FIELDS]
    return out


@cache
def _root(request: bool) -> dict[str, Any]:
    return {"components": _convert(spec()["components"], request=request)}


def validator(schema: dict[str, Any], *, request: bool = False) -> Draft202012Validator:
    root = copy.copy(_root(request))
    root.update(_convert(schema, request=request))
    return Draft202012Validator(root)


def record_schema(*, request: bool) -> Draft202012Validator:
    return validator({"$ref": "#/components/schemas/dns-records_dns-record"}, request=request)


def template_of(path: str) -> str:
    """/client/v4/zones/abc/dns_records/def -> /zones/{zone_id}/dns_records/{dns_record_id}."""
    path = path.removeprefix(API_PREFIX)
    path = re.sub(r"^/zones/[^/]+", "/zones/{zone_id}", path)
    return re.sub(r"/dns_records/(?!batch$)[^/]+$", "/dns_records/{dns_record_id}", path)


def operation(method: str, path: str) -> dict[str, Any] | None:
    item = spec()["paths"].get(template_of(path))
    return None if item is None else item.get(method.lower())


def check_response(method: str, path: str, status: int, body: Any) -> None:
    """Raise ValidationError unless `body` is what the spec allows for this status."""
    if template_of(path) == "/zones/{zone_id}/dns_records/batch":
        return _check_batch_response(status, body)
    op = operation(method, path)
    assert op is not None, f"{method} {path} is not in the contract"
    responses = op["responses"]
    if str(status) in responses:
        entry = responses[str(status)]
    elif 400 <= status < 500:
        entry = responses.get("4xx") or responses["4XX"]
    else:
        # 5xx are undocumented per operation; upstream answers the common failure envelope.
        entry = {"content": {"application/json": {"schema": _failure_ref(path)}}}
    schema = entry["content"]["application/json"]["schema"]
    if status >= 400 and "allOf" in schema:
        # Upstream writes 4xx as allOf[<success schema>, <failure envelope>], which no
        # body can satisfy (success: enum [true] and enum [false]); the failure member
        # is the contract, the success member only says `result` may be present.
        failure = [m for m in schema["allOf"] if "failure" in m.get("$ref", "")]
        schema = {"allOf": failure or [_failure_ref(path)]}
    validator(schema).validate(body)


def _failure_ref(path: str) -> dict[str, str]:
    prefix = "zones" if template_of(path) == "/zones" else "dns-records"
    return {"$ref": f"#/components/schemas/{prefix}_api-response-common-failure"}


def _check_batch_response(status: int, body: Any) -> None:
    if status >= 400:
        validator(_failure_ref("/zones/x/dns_records")).validate(body)
        return
    validator({"$ref": "#/components/schemas/dns-records_api-response-common"}).validate(body)
    result = body["result"]
    if set(result) - {"deletes", "patches", "puts", "posts"}:
        raise ValidationError(f"unexpected batch result keys {sorted(result)}")
    records = record_schema(request=False)
    for key in ("deletes", "patches", "puts", "posts"):
        for item in result.get(key) or []:
            records.validate(item)


def check_request(method: str, path: str, query: dict[str, Any], body: Any) -> None:
    """Raise ValidationError unless the query parameters and body match the operation."""
    template = template_of(path)
    if template == "/zones/{zone_id}/dns_records/batch":
        return _check_batch_request(query, body)
    op = operation(method, path)
    assert op is not None, f"{method} {path} is not in the contract"
    params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
    for name, value in query.items():
        if name not in params:
            raise ValidationError(f"{method} {template}: query parameter {name!r} not in the spec")
        schema = params[name]["schema"]
        resolved = schema
        if "$ref" in schema:
            resolved = spec()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        typed: Any = float(value) if resolved.get("type") == "number" else value
        if resolved.get("type") == "boolean":
            typed = {"true": True, "false": False}.get(value, value)
        validator(schema).validate(typed)
    request_body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    if "schema" in request_body:
        validator(request_body["schema"], request=True).validate(body)


def _check_batch_request(query: dict[str, Any], body: Any) -> None:
    if query:
        raise ValidationError(f"batch: unexpected query {query}")
    if not isinstance(body, dict) or set(body) - {"deletes", "patches", "puts", "posts"}:
        raise ValidationError(f"batch: body must hold deletes/patches/puts/posts, got {body!r}")
    records = record_schema(request=True)
    identifier = validator({"$ref": "#/components/schemas/dns-records_identifier"})
    for key in ("deletes", "patches", "puts", "posts"):
        for item in body.get(key) or []:
            if key != "posts":
                identifier.validate(item.get("id"))
            if key == "deletes":
                if set(item) != {"id"}:
                    raise ValidationError(f"batch delete item {item!r} holds more than an id")
            else:
                records.validate({k: v for k, v in item.items() if k != "id"})
