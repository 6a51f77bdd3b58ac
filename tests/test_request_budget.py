"""democtl's request budgets: fed by the answers' headers, they keep requests the
provider would refuse from being sent at all, and a QPS limiter spaces Kubernetes calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.local.postgres import LocalPostgres
from reconciler.local.stack import cluster_adapter
from reconciler.model import Settings
from reconciler.providers.base import RateLimited
from reconciler.providers.budget import BudgetSpent, RequestBudget, TokenBucket, parse_quota
from reconciler.providers.cloudflare import CloudflareDns
from reconciler.providers.kubernetes import KubernetesCluster
from reconciler.providers.supabase import bucket_of
from tests.gitrepo import sample_settings
from tests.supabase_support import TOKEN, Harness, ManualClock, harness_fixture


@pytest.fixture
def sb(tmp_path: Path, supabase_postgres: LocalPostgres) -> Iterator[Harness]:
    yield from harness_fixture(tmp_path, supabase_postgres)


def test_headers_of_either_vendor_are_read() -> None:
    assert parse_quota({"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "41"}) == (7, 41.0)
    assert parse_quota({"Ratelimit": '"default";r=1199;t=300'}) == (1199, 300.0)
    assert parse_quota({"Content-Type": "application/json"}) is None


def test_a_budget_refuses_once_spent_and_refills_with_its_window() -> None:
    clock = ManualClock()
    budget = RequestBudget(limit=3, window=60, clock=clock)
    for _ in range(3):
        budget.take("k")
    with pytest.raises(BudgetSpent) as caught:
        budget.take("k")
    assert caught.value.wait == 60 and budget.deferred == 1
    # the same words however long the wait: a status quoting it does not change each cycle
    assert str(caught.value) == "the request budget of k is spent"
    budget.take("other")  # another bucket is untouched
    clock.advance(60)
    budget.take("k")


def test_the_answers_correct_the_budget_and_a_429_spends_it() -> None:
    clock = ManualClock()
    budget = RequestBudget(limit=120, window=60, clock=clock)
    budget.take("k")
    # someone else (another process with the same token) spent most of it already
    budget.observe_headers("k", {"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "20"}, 200)
    budget.take("k")
    with pytest.raises(BudgetSpent) as caught:
        budget.take("k")
    assert caught.value.wait == 20
    clock.advance(20)
    budget.take("k")
    budget.observe_headers("k", {"Retry-After": "45"}, 429)
    assert budget.left("k") == 0 and budget.refill_in("k") == 45


@pytest.mark.parametrize(
    "headers, blocked_for",
    [
        pytest.param({"Retry-After": "0"}, 0.0, id="retry-after-0-means-now"),
        pytest.param({}, 60.0, id="no-retry-after-the-documented-window"),
        pytest.param(
            {"Retry-After": "0", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"},
            0.0,
            id="retry-after-0-over-the-reset",
        ),
        # RFC 9110 10.2.3: an HTTP-date, measured against the wall clock (2026-11-25T12:00Z)
        pytest.param(
            {"Retry-After": "Wed, 25 Nov 2026 12:00:45 GMT"}, 45.0, id="retry-after-a-date"
        ),
        pytest.param(
            {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, id="retry-after-a-past-date"
        ),
        pytest.param({"Retry-After": "soon"}, 60.0, id="retry-after-garbage-the-window"),
    ],
)
def test_a_429_blocks_its_bucket_for_what_it_says(
    headers: dict[str, str], blocked_for: float
) -> None:
    budget = RequestBudget(
        limit=120, window=60, clock=ManualClock(), wall_clock=lambda: 1_795_608_000.0
    )
    budget.take("k")
    budget.observe_headers("k", headers, 429)
    assert budget.refill_in("k") == blocked_for


def test_a_429_saying_retry_after_0_spends_nothing_past_now() -> None:
    """`Retry-After: 0` is a wait of none; read as no header it spent the budget for a
    whole window, and every Cloudflare operation of the next five minutes was deferred
    (the 20 %-faults fleet never converged)."""
    clock = ManualClock()
    budget = RequestBudget(limit=1200, window=300, clock=clock)
    budget.observe_headers("k", {"Retry-After": "0"}, 429)
    assert budget.refill_in("k") == 0
    budget.take("k")  # nothing to wait for
    quoted = {"Ratelimit": '"default";r=0;t=300', "Retry-After": "0"}
    budget.observe_headers("k", quoted, 429)
    assert budget.refill_in("k") == 0
    budget.take("k")
    # without Retry-After a 429 still spends the window
    budget.observe_headers("k", {}, 429)
    assert budget.left("k") == 0 and budget.refill_in("k") == 300


def test_supabase_buckets_are_keyed_as_the_api_counts() -> None:
    ref = "abcdefghijabcdefghij"
    assert bucket_of("GET", "/v1/projects") == ("user", "GET /v1/projects")
    assert bucket_of("GET", f"/v1/projects/{ref}/health") == (
        f"project:{ref}",
        "GET /v1/projects/{ref}/health",
    )
    body = {"organization_slug": "acme", "name": "x"}
    assert bucket_of("POST", "/v1/projects", body) == ("organization:acme", "POST /v1/projects")


def test_after_a_429_nothing_is_sent_to_that_bucket_until_it_refills(sb: Harness) -> None:
    ref = sb.healthy("demo-budg01")  # one GET of this project, answered: 119 left
    # another client of the same user spends the rest, unknown to this one
    with httpx.Client(base_url=sb.emulator.url) as other:
        for _ in range(119):
            other.get(f"/v1/projects/{ref}", headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(RateLimited) as caught:
        sb.client.get_project(ref)
    assert caught.value.status_code == 429 and sb.emulator.refused == 1
    assert sb.sleeps.calls == [], "a 429 for the rest of the minute is not retried"
    sent = sum(sb.emulator.requests.values())
    for _ in range(5):
        with pytest.raises(RateLimited, match="deferred, not sent"):
            sb.client.get_project(ref)
    assert sum(sb.emulator.requests.values()) == sent and sb.emulator.refused == 1
    assert sb.client.api_keys(ref).anon, "another endpoint keeps its own budget"
    sb.clock.advance(60)
    assert sb.client.get_project(ref) is not None


def test_a_budget_learnt_from_answers_avoids_the_429(sb: Harness) -> None:
    ref = sb.healthy("demo-budg02")
    sb.client.get_project(ref)  # an answer: the budget now knows the bucket's count
    with httpx.Client(base_url=sb.emulator.url) as other:
        for _ in range(100):
            other.get(f"/v1/projects/{ref}", headers={"Authorization": f"Bearer {TOKEN}"})
    sb.client.get_project(ref)  # this answer says 17 are left
    for _ in range(17):
        sb.client.get_project(ref)
    with pytest.raises(RateLimited, match="deferred, not sent"):
        sb.client.get_project(ref)
    assert sb.emulator.refused == 0, "no 429 received"


def test_the_qps_limiter_spaces_calls_after_the_burst() -> None:
    clock = ManualClock()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    bucket = TokenBucket(5, 10, clock=clock, sleep=sleep)
    for _ in range(10):
        bucket.acquire()
    assert waits == []  # the burst
    for _ in range(5):
        bucket.acquire()
    assert waits == pytest.approx([0.2] * 5)  # then 5 a second
    clock.advance(10)
    for _ in range(10):
        bucket.acquire()
    assert len(waits) == 5, "idle time saves up to the burst again"


def test_cloudflare_operations_wait_once_the_token_budget_is_spent(tmp_path: Path) -> None:
    with CloudflareEmulator(tmp_path, zone_name="demo.example.com", rate_limit=4) as emulator:
        dns = CloudflareDns("cf-token", "demo.example.com", base_url=emulator.api_url)
        try:
            while dns.budget.left("user") != 0:  # each answer's Ratelimit header: r=3..0
                dns.list_records()
            assert sum(emulator.requests.values()) == 4
            sent = sum(emulator.requests.values())
            with pytest.raises(RateLimited, match="deferred, not sent"):
                dns.list_records()
            assert sum(emulator.requests.values()) == sent and emulator.refused == 0
        finally:
            dns.close()


def test_kubernetes_calls_wait_for_their_token(tmp_path: Path) -> None:
    clock = ManualClock()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    emulator = KubernetesEmulator(tmp_path / "k8s")
    with emulator:
        limiter = TokenBucket(5, 2, clock=clock, sleep=sleep)
        cluster = KubernetesCluster.for_url(emulator.url, limiter=limiter)
        try:
            for _ in range(4):
                cluster.list_namespaces()
        finally:
            cluster.close()
    assert emulator.api_server is not None
    calls = sum(emulator.api_server.requests.values())
    assert calls >= 4
    assert sum(waits) == pytest.approx((calls - 2) / 5), "past the burst, 5 calls a second"


def test_the_settings_choose_the_kubernetes_client_qps(tmp_path: Path) -> None:
    """client-go's 5/10 are a default, not the server's limit: the settings' clientQps and
    clientBurst reach the adapter (Flux's 50/300 unless set), so 50 new demos' Secrets do
    not queue behind a 5-a-second token bucket."""
    data = yaml.safe_load(sample_settings())
    defaults = cluster_adapter("http://127.0.0.1:9", Settings.model_validate(data))
    data["kubernetes"].update(clientQps=7.5, clientBurst=3)
    chosen = cluster_adapter("http://127.0.0.1:9", Settings.model_validate(data))
    try:
        assert defaults.limiter is not None and chosen.limiter is not None
        assert (defaults.limiter.qps, defaults.limiter.burst) == (50.0, 300)
        assert (chosen.limiter.qps, chosen.limiter.burst) == (7.5, 3)
        # a pool as large as the workers: no connection opened and discarded per call
        pool = chosen.api_client.rest_client.pool_manager.connection_pool_kw["maxsize"]
        assert pool >= 64
    finally:
        defaults.close()
        chosen.close()
    data["kubernetes"]["clientQps"] = 0
    with pytest.raises(ValueError, match="clientQps"):
        Settings.model_validate(data)
