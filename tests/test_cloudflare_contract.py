"""Contract tests: the Cloudflare emulator's answers and the adapter's requests
against the upstream OpenAPI spec (tests/contracts/specs), batch against the SDK's types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema.exceptions import ValidationError

from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.local.server import Faults
from reconciler.providers.base import DesiredRecord
from reconciler.providers.cloudflare import CloudflareDns, ownership_comment
from tests.cloudflare_spec import check_request, check_response

ZONE = "demo.example.com"
TOKEN = "cf-contract-token-0123456789"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudflareEmulator]:
    with CloudflareEmulator(tmp_path_factory.mktemp("cloudflare"), zone_name=ZONE) as emu:
        yield emu


@pytest.fixture
def emulator(running: CloudflareEmulator) -> CloudflareEmulator:
    running.reset()
    return running


class Recorder:
    """Raw HTTP against the emulator; every exchange is checked against the spec."""

    def __init__(self, emulator: CloudflareEmulator) -> None:
        self.http = httpx.Client(
            base_url=emulator.api_url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            trust_env=False,
        )
        self.checked: list[tuple[str, str, int]] = []

    def __call__(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> tuple[int, Any]:
        response = self.http.request(method, path, params=params, json=json)
        body = response.json()
        check_response(method, "/client/v4" + path, response.status_code, body)
        self.checked.append((method, path, response.status_code))
        return response.status_code, body


def cname(name: str, target: str = "ingress.example.net", **extra: Any) -> dict[str, Any]:
    return {"type": "CNAME", "name": name, "content": target, "ttl": 1, "proxied": True, **extra}


def test_emulator_answers_match_the_spec(emulator: CloudflareEmulator) -> None:
    call = Recorder(emulator)
    zid = emulator.zone_id
    records = f"/zones/{zid}/dns_records"

    status, body = call("GET", "/zones", params={"name": ZONE})
    assert status == 200 and [z["id"] for z in body["result"]] == [zid]
    assert call("GET", "/zones", params={"name": "other.example.org"})[1]["result"] == []

    comment = ownership_comment("demo-acme01")
    status, created = call(
        "POST", records, json=cname(f"demo-acme01-portal.{ZONE}", comment=comment)
    )
    assert status == 200 and created["result"]["comment"] == comment
    record_id = created["result"]["id"]
    call("POST", records, json={"type": "A", "name": "www", "content": "198.51.100.4", "ttl": 300})
    call("POST", records, json={"type": "TXT", "name": "note", "content": "hello", "ttl": 1})

    status, page = call("GET", records, params={"comment.startswith": "managed-by=democtl"})
    assert [r["id"] for r in page["result"]] == [record_id]
    assert page["result_info"]["total_count"] == 1
    status, first = call("GET", records, params={"per_page": 2, "page": 1})
    assert len(first["result"]) == 2 and first["result_info"]["total_pages"] == 2
    status, past = call("GET", records, params={"per_page": 2, "page": 3})
    assert status == 200 and past["result"] == []  # the SDK stops on an empty page
    found = call("GET", records, params={"name": f"WWW.{ZONE}", "type": "A"})[1]["result"]
    assert [r["name"] for r in found] == [f"www.{ZONE}"]

    assert call("GET", f"{records}/{record_id}")[1]["result"]["id"] == record_id
    patched = call(
        "PATCH",
        f"{records}/{record_id}",
        json=cname(f"demo-acme01-portal.{ZONE}", "b.example.net", comment=comment),
    )
    assert patched[1]["result"]["content"] == "b.example.net"
    put = call(
        "PUT", f"{records}/{record_id}", json=cname(f"demo-acme01-portal.{ZONE}", "c.example.net")
    )
    assert "comment" not in put[1]["result"]  # PUT overwrites: the comment is gone

    status, batch = call(
        "POST",
        f"{records}/batch",
        json={
            "posts": [cname(f"demo-b-portal.{ZONE}", comment=ownership_comment("demo-b"))],
            "patches": [{"id": record_id, **cname(f"demo-acme01-portal.{ZONE}", comment=comment)}],
        },
    )
    assert (
        status == 200
        and len(batch["result"]["posts"]) == 1
        and len(batch["result"]["patches"]) == 1
    )

    status, deleted = call("DELETE", f"{records}/{record_id}")
    assert status == 200 and deleted["result"] == {"id": record_id}

    # Failures: Cloudflare's envelope with the documented codes.
    errors = {
        "identical": call(
            "POST", records, json={"type": "A", "name": "www", "content": "198.51.100.4", "ttl": 1}
        ),
        "cname-conflict": call("POST", records, json=cname("www")),
        "long-comment": call("POST", records, json=cname("x", comment="c" * 101)),
        "bad-ttl": call("POST", records, json=cname("y") | {"proxied": False, "ttl": 5}),
        "bad-ip": call(
            "POST", records, json={"type": "A", "name": "z", "content": "not-an-ip", "ttl": 1}
        ),
        "missing": call("GET", f"{records}/{'0' * 32}"),
        "delete-missing": call("DELETE", f"{records}/{record_id}"),
        "bad-per-page": call("GET", records, params={"per_page": 0}),
        "batch-missing": call("POST", f"{records}/batch", json={"deletes": [{"id": record_id}]}),
    }
    codes = {name: (status, body["errors"][0]["code"]) for name, (status, body) in errors.items()}
    assert codes["identical"] == (400, 81057)
    assert codes["cname-conflict"] == (400, 81053)
    assert codes["missing"] == (404, 81044) and codes["delete-missing"] == (404, 81044)
    assert codes["batch-missing"] == (404, 81044)
    for name in ("long-comment", "bad-ttl", "bad-ip", "bad-per-page"):
        assert codes[name][0] == 400 and 9000 <= codes[name][1] < 10000, name
    # A failed batch changes nothing.
    assert [r["name"] for r in emulator.inspect()["records"]].count(f"demo-b-portal.{ZONE}") == 1

    emulator.set_faults(Faults(rate_limit=1.0, retry_after=300))
    response = call.http.get(records)
    assert response.status_code == 429 and response.headers["retry-after"] == "300"
    check_response("GET", "/client/v4" + records, 429, response.json())
    emulator.set_faults(Faults(server_error=1.0))
    response = call.http.get(records)
    assert response.status_code == 503
    check_response("GET", "/client/v4" + records, 503, response.json())


def test_the_contract_checks_bite() -> None:
    """The validators reject what the spec forbids, so the passes above mean something."""
    path = "/client/v4/zones/abc/dns_records"
    with pytest.raises(ValidationError):
        check_response("GET", path, 200, {"result": []})  # no success/errors/messages
    with pytest.raises(ValidationError):
        check_response(
            "GET",
            path,
            400,
            {"success": False, "errors": [{"code": 1}], "messages": [], "result": None},
        )
    with pytest.raises(ValidationError):
        check_request("POST", path, {}, {"type": "CNAME", "name": "x"})  # no content
    with pytest.raises(ValidationError):
        check_request("GET", path, {"name.exact": "x"}, None)  # newer than the 2024 contract
    with pytest.raises(ValidationError):
        check_request("POST", path + "/batch", {}, {"deletes": [{"id": "x", "name": "y"}]})


def test_adapter_requests_match_the_spec(emulator: CloudflareEmulator) -> None:
    """Every request the adapter sends through the real SDK, over a whole lifecycle."""
    emulator.seed_record(type="CNAME", name=f"taken.portal.{ZONE}", content="elsewhere.example.org")
    dns = CloudflareDns(TOKEN, ZONE, base_url=emulator.api_url, max_retries=1, per_page=3)

    def desired(demo: str, target: str = "ingress.example.net") -> list[DesiredRecord]:
        return [
            DesiredRecord(demo, f"{demo}-portal.{ZONE}", "CNAME", target, True),
            DesiredRecord(demo, f"{demo}-candidate.{ZONE}", "CNAME", target, False),
        ]

    for demo in ("demo-a", "demo-b", "demo-c"):
        dns.ensure_records(demo, desired(demo))
    dns.ensure_records("demo-a", desired("demo-a", "ingress2.example.net"))  # batch of patches
    dns.ensure_records("demo-d", desired("demo-d")[:1])  # single POST
    dns.ensure_records(
        "demo-d", [DesiredRecord("demo-d", f"demo-d-portal.{ZONE}", "CNAME", "x.example.net", True)]
    )
    emulator.lose_responses("POST /zones/{zone_id}/dns_records/batch")
    dns.ensure_records("demo-e", desired("demo-e"))  # adopt after the retried batch
    with pytest.raises(Exception, match="not ours"):
        dns.ensure_records(
            "demo-taken",
            [DesiredRecord("demo-taken", f"taken.portal.{ZONE}", "CNAME", "a.example.net", True)],
        )
    owned = dns.list_records()
    dns.delete_records("demo-b", [r for r in owned if r.demo_id == "demo-b"])
    dns.delete_records("demo-d", [r for r in owned if r.demo_id == "demo-d"])  # single DELETE
    dns.delete_records("demo-d", [r for r in owned if r.demo_id == "demo-d"])  # gone already

    calls = list(emulator.calls)
    routes = {c["route"] for c in calls}
    assert routes >= {
        "GET /zones",
        "GET /zones/{zone_id}/dns_records",
        "POST /zones/{zone_id}/dns_records",
        "PATCH /zones/{zone_id}/dns_records/{dns_record_id}",
        "POST /zones/{zone_id}/dns_records/batch",
        "DELETE /zones/{zone_id}/dns_records/{dns_record_id}",
    }
    for c in calls:
        check_request(c["method"], c["path"], c["query"], c["body"])
        assert c["auth"] == "bearer"


@pytest.mark.parametrize(
    "query, expected",
    [
        pytest.param({"name": f"a.{ZONE}"}, ["a"], id="name-alias-exact"),
        pytest.param({"name.exact": f"A.{ZONE}"}, ["a"], id="name-exact-case-insensitive"),
        pytest.param({"name.startswith": "b"}, ["b1", "b2"], id="name-startswith"),
        pytest.param({"name.contains": "2"}, ["b2"], id="name-contains"),
        pytest.param({"type": "TXT"}, ["b2"], id="type"),
        pytest.param({"comment.exact": "Team=Web"}, ["a"], id="comment-exact-case-insensitive"),
        pytest.param({"comment.startswith": "team="}, ["a", "b1"], id="comment-startswith"),
        pytest.param({"comment.contains": "ops"}, ["b1"], id="comment-contains"),
        pytest.param({"comment.absent": ""}, ["b2"], id="comment-absent"),
        pytest.param({"comment.present": ""}, ["a", "b1"], id="comment-present"),
        pytest.param(
            {"type": "TXT", "comment.contains": "web", "match": "any"}, ["a", "b2"], id="match-any"
        ),
        pytest.param({"proxied": "true"}, ["a"], id="proxied"),
    ],
)
def test_emulator_list_filters(
    emulator: CloudflareEmulator, query: dict[str, str], expected: list[str]
) -> None:
    emulator.seed_record(
        type="CNAME", name="a", content="x.example.net", proxied=True, comment="team=web"
    )
    emulator.seed_record(type="A", name="b1", content="198.51.100.1", comment="team=ops")
    emulator.seed_record(type="TXT", name="b2", content="hello")
    http = httpx.Client(
        base_url=emulator.api_url, headers={"Authorization": "Bearer t"}, trust_env=False
    )
    response = http.get(f"/zones/{emulator.zone_id}/dns_records", params=query)
    body = response.json()
    assert response.status_code == 200, body
    # The SDK-era filters (name.exact, ...) postdate the 2024 contract; the envelope does not.
    check_response("GET", f"/client/v4/zones/{emulator.zone_id}/dns_records", 200, body)
    assert sorted(r["name"].removesuffix(f".{ZONE}") for r in body["result"]) == expected
