"""The emulators' rate limits are shaped as the vendors document them, one test per scope.

Supabase (supabase/supabase apps/docs/content/_partials/api_rate_limits.mdx): 120
requests a minute per user, per project or organisation, per endpoint; calls naming
neither count against the user; `POST /v1/projects` counts against the organisation in
its body; past the limit every call in that bucket is refused for the rest of the
minute; every answer carries X-RateLimit-Limit/Remaining/Reset. Cloudflare
(developers.cloudflare.com/fundamentals/api/reference/limits): 1,200 per five minutes
per user, then blocked for the rest of the five minutes, `Ratelimit` headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.local.postgres import LocalPostgres
from reconciler.local.server import Request
from reconciler.local.supabase_emulator import SupabaseEmulator
from tests.supabase_support import ORGANIZATION, TOKEN, ManualClock

LIMIT = 120


@pytest.fixture
def world(
    tmp_path: Path, supabase_postgres: LocalPostgres
) -> Iterator[tuple[SupabaseEmulator, httpx.Client, ManualClock, list[str]]]:
    clock = ManualClock()
    emulator = SupabaseEmulator(
        tmp_path / "sb", supabase_postgres, clock=clock, organizations=(ORGANIZATION,)
    )
    refs = [emulator.add_project(n, organization_slug=ORGANIZATION) for n in ("a", "b")]
    emulator.start()
    http = httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        yield emulator, http, clock, refs
    finally:
        http.close()
        emulator.stop()


def _spend(
    http: httpx.Client, method: str, path: str, times: int, **kw: object
) -> list[httpx.Response]:
    return [http.request(method, path, **kw) for _ in range(times)]  # type: ignore[arg-type]


def _headers(response: httpx.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["X-RateLimit-Limit"]), int(h["X-RateLimit-Remaining"]), int(h["X-RateLimit-Reset"])


def test_calls_naming_no_project_count_against_the_user(world) -> None:  # type: ignore[no-untyped-def]
    emulator, http, clock, refs = world
    answers = _spend(http, "GET", "/v1/projects", LIMIT)
    assert all(a.status_code == 200 for a in answers)
    assert [_headers(a)[1] for a in answers[:3]] == [119, 118, 117]
    assert _headers(answers[-1]) == (LIMIT, 0, 60)
    refused = http.get("/v1/projects")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    # another endpoint of the user scope, and a project's, have buckets of their own
    assert http.get("/v1/organizations").status_code != 429
    assert http.get(f"/v1/projects/{refs[0]}").status_code == 200
    clock.advance(30)
    late = http.get("/v1/projects")
    assert late.status_code == 429, "blocked for the rest of the minute"
    assert late.headers["Retry-After"] == "30" and _headers(late)[2] == 30
    clock.advance(30)
    assert http.get("/v1/projects").status_code == 200, "a new minute, a new quota"
    assert emulator.refused == 2


def test_each_project_and_each_endpoint_has_its_own_bucket(world) -> None:  # type: ignore[no-untyped-def]
    _emulator, http, clock, (a, b) = world
    assert all(r.status_code == 200 for r in _spend(http, "GET", f"/v1/projects/{a}", LIMIT))
    assert http.get(f"/v1/projects/{a}").status_code == 429
    assert http.get(f"/v1/projects/{b}").status_code == 200, "another project"
    health = http.get(f"/v1/projects/{a}/health", params={"services": "db"})
    assert health.status_code == 200, "another endpoint of the same project"
    assert _headers(health)[1] == LIMIT - 1
    assert http.get("/v1/projects").status_code == 200, "the user's own bucket"
    clock.advance(60)
    assert http.get(f"/v1/projects/{a}").status_code == 200


def test_creating_a_project_counts_against_the_organisation_in_its_body(world) -> None:  # type: ignore[no-untyped-def]
    emulator, http, _clock, _ = world
    # refused by validation (an unknown field), so no database is made: each still counts
    bad = {"name": "x", "db_pass": "p", "organization_slug": ORGANIZATION, "nope": 1}
    answers = _spend(http, "POST", "/v1/projects", LIMIT, json=bad)
    assert {a.status_code for a in answers} == {400}
    assert http.post("/v1/projects", json=bad).status_code == 429
    other = dict(bad, organization_slug="another-org")
    assert http.post("/v1/projects", json=other).status_code == 400, "another organisation"
    assert http.get("/v1/projects").status_code == 200, "listing is the user's bucket"
    members = Request("GET", "/v1/organizations/acme/members", {}, {}, b"")
    assert emulator.scope_of(members)[1:] == (
        "organization:acme",
        "GET /v1/organizations/{slug}/members",
    )


def test_every_answer_carries_the_headers(world) -> None:  # type: ignore[no-untyped-def]
    emulator, http, _clock, (a, _) = world
    answers = [
        http.get("/v1/projects"),
        http.get(f"/v1/projects/{a}/api-keys"),
        http.get("/v1/projects/nosuchprojectreference"),  # 400: not a ref
        http.get("/v1/projects/abcdefghijabcdefghij"),  # 404
        httpx.get(emulator.url + "/v1/projects"),  # 401: no token, counted by address
    ]
    assert [r.status_code for r in answers] == [200, 200, 400, 404, 401]
    for answer in answers:
        assert _headers(answer)[0] == LIMIT


def test_cloudflare_blocks_a_user_for_the_rest_of_five_minutes(tmp_path: Path) -> None:
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    emulator = CloudflareEmulator(
        tmp_path, zone_name="splits.network", clock=lambda: now[0], rate_limit=5
    )
    with emulator:
        http = httpx.Client(base_url=emulator.api_url, headers={"Authorization": "Bearer cf-token"})
        answers = _spend(http, "GET", "/zones", 5)
        assert {a.status_code for a in answers} == {200}
        assert answers[0].headers["Ratelimit"] == '"default";r=4;t=300'
        assert answers[0].headers["Ratelimit-Policy"] == '"default";q=5;w=300'
        refused = http.get(f"/zones/{emulator.zone_id}/dns_records")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "300"
        assert refused.json()["errors"][0]["code"] == 1015
        other = httpx.get(emulator.api_url + "/zones", headers={"Authorization": "Bearer other"})
        assert other.status_code == 200, "another user"
        now[0] += timedelta(seconds=299)
        assert http.get("/zones").status_code == 429
        now[0] += timedelta(seconds=1)
        assert http.get("/zones").status_code == 200
        http.close()


def test_cloudflare_default_is_the_documented_limit(tmp_path: Path) -> None:
    with CloudflareEmulator(tmp_path, zone_name="splits.network") as emulator:
        answer = httpx.get(emulator.api_url + "/zones", headers={"Authorization": "Bearer t"})
        assert answer.headers["Ratelimit-Policy"] == '"default";q=1200;w=300'
