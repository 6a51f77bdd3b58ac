"""The Supabase emulator's shapes: what `POST /v1/projects` accepts, what api-keys answers.

The values of V1CreateProjectBody in the OpenAPI spec (tests/contracts/specs/
supabase-management-api.json), refused as the API's validation refuses every body
error: 400 with `{"message"}`. Standard library and `local.server` only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any
from uuid import UUID

from reconciler.local.server import Response

REGIONS = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-east-1", "ap-southeast-1",
        "ap-northeast-1", "ap-northeast-2", "ap-southeast-2", "eu-west-1", "eu-west-2",
        "eu-west-3", "eu-north-1", "eu-central-1", "eu-central-2", "ca-central-1",
        "ap-south-1", "sa-east-1",
    }
)  # fmt: skip
CREATE_FIELDS = frozenset(
    {
        "db_pass", "name", "organization_id", "organization_slug", "plan", "region",
        "region_selection", "kps_enabled", "desired_instance_size", "template_url",
    }
)  # fmt: skip
# V1CreateProjectBody.desired_instance_size in ../shared/specs/supabase-management-api.json
INSTANCE_SIZES = (
    "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge",
    "12xlarge", "16xlarge", "24xlarge", "24xlarge_optimized_memory", "24xlarge_optimized_cpu",
    "24xlarge_high_memory", "48xlarge", "48xlarge_optimized_memory", "48xlarge_optimized_cpu",
    "48xlarge_high_memory",
)  # fmt: skip
PLANS = ("free", "pro")
SMART_GROUPS = {"americas": "us-east-1", "emea": "eu-central-1", "apac": "ap-south-1"}

# What the API answers a token with no rights on an organisation: 403 (the spec's
# "Forbidden action"), with the message the fine-grained permission check gives
# (supabase/cli issue #6392 quotes it). An organisation the token cannot see looks the same.
FORBIDDEN = (
    "Your account does not have the necessary privileges to access this endpoint. For more "
    "details, refer to our documentation https://supabase.com/docs/guides/platform/access-control"
)

_SLUG = re.compile(r"^[\w-]+$")


def _not_one_of(field: str, values: list[str]) -> str:
    return f"{field} must be one of the following values: {', '.join(values)}"


def _error(message: str) -> Response:
    return Response(400, {"message": message})


def create_body_error(body: dict[str, Any]) -> str | Response:
    """The region a valid create body asks for, or the 400 answer to an invalid one."""
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        return _error(f"property {unknown[0]} should not exist")
    for required in ("db_pass", "name", "organization_slug"):
        if not isinstance(body.get(required), str) or not body[required]:
            return _error(f"{required} must be a non-empty string")
    if len(body["name"]) > 256:
        return _error("name must be shorter than or equal to 256 characters")
    if not _SLUG.match(body["organization_slug"]):
        return _error("organization_slug must match ^[\\w-]+$")
    if "region" in body and "region_selection" in body:
        return _error("Only one of region or region_selection can be specified.")
    # The spec's enums (V1CreateProjectBody), answered as the API's validation
    # answers every body error: 400 with {"message"}.
    region = body.get("region", "us-east-1")
    if region not in REGIONS:
        return _error(_not_one_of("region", sorted(REGIONS)))
    selection = body.get("region_selection")
    if selection is not None:
        if not isinstance(selection, dict) or selection.get("type") not in {
            "specific",
            "smartGroup",
        }:
            return _error(_not_one_of("region_selection.type", ["specific", "smartGroup"]))
        if set(selection) - {"type", "code"}:
            extra = sorted(set(selection) - {"type", "code"})[0]
            return _error(f"property region_selection.{extra} should not exist")
        code = selection.get("code")
        if selection["type"] == "smartGroup":
            if code not in SMART_GROUPS:
                return _error(_not_one_of("region_selection.code", list(SMART_GROUPS)))
            region = SMART_GROUPS[str(code)]
        elif code not in REGIONS:
            return _error(_not_one_of("region_selection.code", sorted(REGIONS)))
        else:
            region = str(code)
    size = body.get("desired_instance_size")
    if size is not None and size not in INSTANCE_SIZES:
        return _error(_not_one_of("desired_instance_size", list(INSTANCE_SIZES)))
    if body.get("plan") is not None and body["plan"] not in PLANS:
        return _error(_not_one_of("plan", list(PLANS)))
    if "kps_enabled" in body and not isinstance(body["kps_enabled"], bool):
        return _error("kps_enabled must be a boolean value")
    return str(region)


def iso(seconds: float) -> str:
    return (
        dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


def project_keys(salt: str, ref: str, reveal: bool) -> list[dict[str, Any]]:
    """The api-keys answer: legacy JWTs and the new publishable/secret keys, derived
    from the ref and the state's salt (so nothing secret is stored)."""

    def derive(kind: str) -> str:
        return hashlib.sha256(f"{salt}:{ref}:{kind}".encode()).hexdigest()

    def jwt(role: str) -> str:
        return f"eyJhbGciOiJIUzI1NiJ9.{role}-{ref}.{derive(role)[:43]}"

    publishable = f"sb_publishable_{derive('publishable')[:32]}"
    secret = f"sb_secret_{derive('secret')[:32]}"
    stamp = iso(0)
    return [
        {"name": "anon", "api_key": jwt("anon"), "id": "anon", "type": "legacy",
         "hash": derive("anon-hash")[:43], "prefix": jwt("anon")[:5],
         "description": "Legacy anon API key"},
        {"name": "service_role", "api_key": jwt("service_role"), "id": "service_role",
         "type": "legacy", "hash": derive("sr-hash")[:43], "prefix": jwt("service_role")[:5],
         "description": "Legacy service_role API key"},
        {"id": str(UUID(derive("pub-id")[:32])), "name": "default", "type": "publishable",
         "api_key": publishable, "description": None, "secret_jwt_template": None,
         "hash": derive("pub-hash")[:43], "prefix": publishable[:20],
         "inserted_at": stamp, "updated_at": stamp},
        {"id": str(UUID(derive("sec-id")[:32])), "name": "default", "type": "secret",
         "api_key": secret if reveal else secret[:14] + "\u00b7" * 26,
         "description": None, "secret_jwt_template": {"role": "service_role"},
         "hash": derive("sec-hash")[:43], "prefix": secret[:14],
         "inserted_at": stamp, "updated_at": stamp},
    ]  # fmt: skip
