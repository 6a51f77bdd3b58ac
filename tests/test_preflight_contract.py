"""Doctor's Supabase and Cloudflare questions, on the wire: as the APIs define them.

- the adapter's organisation requests and the emulator's answers validate against the
  Management API spec (the checker of test_supabase_contract, which checks itself);
- a free organisation, an unknown one and the project count come back as the spec shapes
  them; the Cloudflare token verify and certificate packs are read through the real SDK,
  pending packs included only when `status=all` is asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_core import OpenAPI

from reconciler.local.cloudflare_access import universal_pack
from reconciler.local.cloudflare_emulator import CloudflareEmulator, envelope_error
from reconciler.local.postgres import LocalPostgres
from reconciler.local.server import Response
from reconciler.providers.base import Organization, ProviderError
from reconciler.providers.cloudflare import CloudflareDns
from tests.supabase_support import ORGANIZATION, Harness, Recorder, harness_fixture
from tests.test_supabase_contract import check_exchange, spec  # noqa: F401 (a fixture)


@pytest.fixture
def sb(tmp_path: Path, supabase_postgres: LocalPostgres) -> Iterator[Harness]:
    yield from harness_fixture(tmp_path, supabase_postgres)


def test_organisation_requests_and_answers_follow_the_spec(spec: OpenAPI, sb: Harness) -> None:  # noqa: F811
    recorder = Recorder()
    sb.emulator.server.handler = recorder.wrap(sb.emulator.handle)
    client = sb.client
    assert client.organizations() == [Organization(ORGANIZATION, ORGANIZATION)]
    assert client.organization(ORGANIZATION).plan == "pro"
    assert client.organization_project_count(ORGANIZATION) == 0
    client.create_project("demo-contract", "creation-pass-1")
    sb.emulator.add_project("democtl-demo-other", organization_slug="other-org")
    assert client.organization_project_count(ORGANIZATION) == 1
    sb.emulator.plans[ORGANIZATION] = "free"
    assert client.organization(ORGANIZATION).plan == "free"
    with pytest.raises(ProviderError) as refused:
        client.organization("not-a-member")
    assert refused.value.status_code == 403
    routes = {sb.emulator._route(req) for req, _ in recorder.exchanges}
    assert routes >= {
        "GET /v1/organizations",
        "GET /v1/organizations/{slug}",
        "GET /v1/organizations/{slug}/projects",
    }
    for req, resp in recorder.exchanges:
        query = [(k, v) for k, values in req.query.items() for v in values]
        body = json.loads(req.body) if req.body else None
        check_exchange(spec, req.method, req.path, query, req.headers, body, resp.status, resp.body)


def test_token_verify_and_certificate_packs_through_the_sdk(tmp_path: Path) -> None:
    pending = {**universal_pack("example.com"), "id": "p2", "type": "advanced",
               "hosts": ["*.portal.example.com"], "status": "pending_validation"}  # fmt: skip
    with CloudflareEmulator(tmp_path, zone_name="example.com") as emulator:
        dns = CloudflareDns("cf-token", "example.com", base_url=emulator.api_url)
        try:
            assert dns.verify_token() == "active"
            packs = dns.certificate_packs()
            assert [(p.type, p.hosts, p.active) for p in packs] == [
                ("universal", ("example.com", "*.example.com"), True)
            ]
            emulator.token.certificate_packs = [universal_pack("example.com"), pending]
            assert {p.id: p.active for p in dns.certificate_packs()} == {
                universal_pack("example.com")["id"]: True,
                "p2": False,
            }
            assert dns.can_read_records() and dns.can_edit_records()
            assert emulator.inspect()["records"] == []  # asking changed nothing
            # a service that judges an empty batch by its content has authorised it first
            handle = emulator.server.handler
            emulator.server.handler = lambda r: (
                Response(400, envelope_error(400, "batch has no operations", 9207))
                if r.path.endswith("/dns_records/batch")
                else handle(r)
            )
            before = len(emulator.calls)
            assert dns.can_edit_records()
            assert len(emulator.calls) == before  # the 400 answered, not the emulator
            emulator.server.handler = handle
            emulator.token.permissions = frozenset({"zone:read", "dns:read"})
            assert dns.can_read_records() and not dns.can_edit_records()
            emulator.token.status = "disabled"
            assert dns.verify_token() == "disabled"
        finally:
            dns.close()
    # without status=all the API lists active packs only; doctor always asks for all
    assert [p["id"] for p in emulator.token.packs("example.com", all_statuses=False)] == [
        universal_pack("example.com")["id"]
    ]
    listed = [c for c in emulator.calls if c["route"].endswith("/ssl/certificate_packs")]
    assert listed and all(c["query"].get("status") == "all" for c in listed)
