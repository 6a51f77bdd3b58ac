"""Behaviour of the Cloudflare DNS adapter against the emulator, through the real SDK."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import cloudflare
import httpx
import pytest

from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.local.server import Faults, Request, Response
from reconciler.marks import Owner
from reconciler.providers.base import (
    Conflict,
    DesiredRecord,
    DnsRecord,
    ProviderError,
    RateLimited,
)
from reconciler.providers.cloudflare import (
    CloudflareDns,
    owner_of,
    ownership_comment,
)

ZONE = "demo.example.com"
TOKEN = "cf-test-token-SECRET-7f3a9c"
TARGET = "ingress.example.net"
LIST = "GET /zones/{zone_id}/dns_records"
CREATE = "POST /zones/{zone_id}/dns_records"
BATCH = "POST /zones/{zone_id}/dns_records/batch"
WRITES = (
    CREATE,
    BATCH,
    "PATCH /zones/{zone_id}/dns_records/{dns_record_id}",
    "PUT /zones/{zone_id}/dns_records/{dns_record_id}",
    "DELETE /zones/{zone_id}/dns_records/{dns_record_id}",
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudflareEmulator]:
    state = tmp_path_factory.mktemp("cloudflare")
    with CloudflareEmulator(state, zone_name=ZONE, api_token=TOKEN) as emu:
        yield emu


@pytest.fixture
def emulator(running: CloudflareEmulator) -> CloudflareEmulator:
    running.reset()
    return running


@pytest.fixture
def make_dns(emulator: CloudflareEmulator) -> Iterator[Callable[..., CloudflareDns]]:
    made: list[CloudflareDns] = []

    def make(**options: Any) -> CloudflareDns:
        options.setdefault("max_retries", 2)
        dns = CloudflareDns(TOKEN, ZONE, base_url=emulator.api_url, **options)
        made.append(dns)
        return dns

    yield make
    for dns in made:
        dns.close()


@pytest.fixture
def dns(make_dns: Callable[..., CloudflareDns]) -> CloudflareDns:
    return make_dns()


def desired(demo: str, target: str = TARGET, proxied: bool = True) -> list[DesiredRecord]:
    return [
        DesiredRecord(demo, f"{demo}-portal.{ZONE}", "CNAME", target, proxied),
        DesiredRecord(demo, f"{demo}-candidate.{ZONE}", "CNAME", target, proxied),
    ]


def writes(emulator: CloudflareEmulator) -> int:
    return sum(emulator.requests[route] for route in WRITES)


def records_named(emulator: CloudflareEmulator, name: str) -> list[dict[str, Any]]:
    return [r for r in emulator.inspect()["records"] if r["name"] == name]


def seed_foreign(emulator: CloudflareEmulator) -> list[dict[str, Any]]:
    """Records democtl must never touch, some of them deliberately close to our mark."""
    return [
        emulator.seed_record(type="CNAME", name=f"www.{ZONE}", content="site.example.org"),
        emulator.seed_record(
            type="A", name=f"api.{ZONE}", content="198.51.100.7", comment="team=platform"
        ),
        emulator.seed_record(
            type="CNAME",
            name=f"shouty.{ZONE}",
            content=TARGET,
            comment="MANAGED-BY=DEMOCTL DEMO=demo-x",
        ),
        emulator.seed_record(
            type="CNAME",
            name=f"suffix.{ZONE}",
            content=TARGET,
            comment="managed-by=democtl demo=demo-a (hand-made)",
        ),
        emulator.seed_record(type="TXT", name=f"demo-a-portal.{ZONE}", content="v=verification"),
    ]


# --- ownership comment ------------------------------------------------------------------


@pytest.mark.parametrize(
    "comment, owner",
    [
        pytest.param("managed-by=democtl owner=default demo=demo-acme01", "demo-acme01", id="ours"),
        pytest.param("managed-by=democtl demo=demo-acme01", None, id="old-mark"),
        pytest.param("managed-by=democtl owner=staging demo=demo-acme01", None, id="other-owner"),
        pytest.param("", None, id="no-comment"),
        pytest.param("team=platform", None, id="other-comment"),
        pytest.param("MANAGED-BY=DEMOCTL DEMO=demo-a", None, id="case-differs"),
        pytest.param("managed-by=democtl demo=demo-a extra", None, id="trailing-text"),
        pytest.param("x managed-by=democtl demo=demo-a", None, id="leading-text"),
    ],
)
def test_ownership_comment_is_parsed_strictly(comment: str, owner: str | None) -> None:
    assert owner_of(comment) == owner


def test_ownership_comment_fits_the_free_plan() -> None:
    longest = ownership_comment("demo-" + "a" * 27)  # demo ids hold at most 32 characters
    assert len(longest) <= 100 and owner_of(longest) == "demo-" + "a" * 27


# --- listing ----------------------------------------------------------------------------


def test_list_reads_many_records_in_few_pages(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    for i in range(60):
        for kind in ("portal", "candidate"):
            emulator.seed_record(
                type="CNAME",
                name=f"demo-{i:03d}.{kind}.{ZONE}",
                content=TARGET,
                proxied=True,
                comment=ownership_comment(f"demo-{i:03d}"),
            )
    foreign = seed_foreign(emulator)
    dns = make_dns(per_page=50, zone_id=emulator.zone_id)

    records = dns.list_records()

    assert len(records) == 120
    assert {r.demo_id for r in records} == {f"demo-{i:03d}" for i in range(60)}
    assert not {r.id for r in records} & {f["id"] for f in foreign}
    # 120 records at 50 a page: 50, 50, 20; the short page ends it (no empty page asked).
    assert emulator.requests[LIST] == 3
    assert emulator.requests["GET /zones"] == 0  # zone id configured


def test_list_with_the_default_page_size_is_one_request(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    for i in range(150):
        emulator.seed_record(
            type="CNAME",
            name=f"demo-{i}-portal.{ZONE}",
            content=TARGET,
            comment=ownership_comment(f"demo-{i}"),
        )
    assert len(dns.list_records()) == 150
    assert emulator.requests[LIST] == 1


def test_full_pages_end_on_the_empty_page_past_the_end(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    for i in range(10):
        emulator.seed_record(
            type="CNAME",
            name=f"demo-{i}-portal.{ZONE}",
            content=TARGET,
            comment=ownership_comment(f"demo-{i}"),
        )
    assert len(make_dns(per_page=5).list_records()) == 10
    assert emulator.requests[LIST] == 3  # 5, 5, then the empty page


def test_the_sdk_own_auto_paging_terminates_on_the_emulator(emulator: CloudflareEmulator) -> None:
    for i in range(7):
        emulator.seed_record(type="A", name=f"h{i}", content=f"198.51.100.{i + 1}")
    client = cloudflare.Cloudflare(
        api_token=TOKEN, base_url=emulator.api_url, http_client=httpx.Client(trust_env=False)
    )
    seen = [r.id for r in client.dns.records.list(zone_id=emulator.zone_id, per_page=3)]
    assert len(seen) == len(set(seen)) == 7
    assert emulator.requests[LIST] == 4  # 3, 3, 1, then the empty page the SDK needs


# --- ensure -----------------------------------------------------------------------------


def test_ensure_creates_marked_records_with_automatic_ttl(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    result = dns.ensure_records("demo-acme01", desired("demo-acme01"))

    assert [(r.name, r.content, r.proxied, r.ttl, r.demo_id) for r in result] == [
        (f"demo-acme01-candidate.{ZONE}", TARGET, True, 1, "demo-acme01"),
        (f"demo-acme01-portal.{ZONE}", TARGET, True, 1, "demo-acme01"),
    ]
    stored = emulator.inspect()["records"]
    assert {r["comment"] for r in stored} == {"managed-by=democtl owner=default demo=demo-acme01"}
    assert emulator.requests[BATCH] == 1 and emulator.requests[CREATE] == 0
    assert emulator.requests["GET /zones"] == 1  # zone id resolved from the name once


def test_ensure_twice_writes_nothing_the_second_time(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    first = dns.ensure_records("demo-a", desired("demo-a"))
    before = writes(emulator)
    second = dns.ensure_records("demo-a", desired("demo-a"))
    assert writes(emulator) == before
    assert second == first


def test_unproxied_records_converge_too(emulator: CloudflareEmulator, dns: CloudflareDns) -> None:
    dns.ensure_records("demo-a", desired("demo-a", proxied=False))
    before = writes(emulator)
    dns.ensure_records("demo-a", desired("demo-a", proxied=False))
    assert writes(emulator) == before


def test_addresses_compare_in_canonical_form(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    wanted = [DesiredRecord("demo-a", f"demo-a-portal.{ZONE}", "AAAA", "2001:DB8:0:0::1", False)]
    [record] = dns.ensure_records("demo-a", wanted)
    assert record.content == "2001:db8::1"
    before = writes(emulator)
    dns.ensure_records("demo-a", wanted)
    assert writes(emulator) == before


def test_a_record_someone_gave_a_ttl_is_set_back_to_automatic(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    emulator.seed_record(
        type="CNAME",
        name=f"demo-a-portal.{ZONE}",
        content=TARGET,
        ttl=300,
        comment=ownership_comment("demo-a"),
    )
    [record] = dns.ensure_records("demo-a", desired("demo-a", proxied=False)[:1])
    assert record.ttl == 1


def test_target_change_updates_in_place(emulator: CloudflareEmulator, dns: CloudflareDns) -> None:
    before = {r.name: r.id for r in dns.ensure_records("demo-a", desired("demo-a"))}
    after = dns.ensure_records("demo-a", desired("demo-a", target="ingress-2.example.net"))
    assert {r.name: r.id for r in after} == before
    assert {r.content for r in after} == {"ingress-2.example.net"}
    assert len(emulator.inspect()["records"]) == 2
    assert emulator.requests[BATCH] == 2  # one create batch, one update batch


def test_proxied_change_updates_a_single_record_without_batch(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    [one] = desired("demo-a")[:1]
    [created] = dns.ensure_records("demo-a", [one])
    assert emulator.requests[CREATE] == 1 and emulator.requests[BATCH] == 0
    [updated] = dns.ensure_records(
        "demo-a", [DesiredRecord("demo-a", one.name, "CNAME", one.content, proxied=False)]
    )
    assert updated.id == created.id and updated.proxied is False
    assert emulator.requests["PATCH /zones/{zone_id}/dns_records/{dns_record_id}"] == 1


def test_type_change_replaces_the_record_in_one_batch(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    [one] = desired("demo-a")[:1]
    dns.ensure_records("demo-a", [one])
    [record] = dns.ensure_records(
        "demo-a", [DesiredRecord("demo-a", one.name, "A", "198.51.100.9", True)]
    )
    assert (record.type, record.content) == ("A", "198.51.100.9")
    assert [r["type"] for r in records_named(emulator, one.name)] == ["A"]
    assert emulator.requests[BATCH] == 1


def test_adopts_a_create_whose_answer_was_lost(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    """The SDK retries POST without an idempotency key: the retry meets 81057 and the
    record the first attempt made is adopted, never duplicated."""
    [one] = desired("demo-a")[:1]
    emulator.lose_responses(CREATE)

    [record] = dns.ensure_records("demo-a", [one])

    assert emulator.requests[CREATE] == 2  # the lost one and the SDK's retry
    stored = records_named(emulator, one.name)
    assert len(stored) == 1 and stored[0]["id"] == record.id
    assert record.demo_id == "demo-a"


def test_adopts_a_batch_whose_answer_was_lost(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    emulator.lose_responses(BATCH)
    result = dns.ensure_records("demo-a", desired("demo-a"))
    assert emulator.requests[BATCH] == 2
    assert len(emulator.inspect()["records"]) == 2
    assert sorted(r.id for r in result) == sorted(r["id"] for r in emulator.inspect()["records"])


def test_adopts_after_a_crash_between_create_and_record(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    make_dns().ensure_records("demo-a", desired("demo-a"))
    fresh = make_dns()  # a new process knows nothing
    before = writes(emulator)
    assert len(fresh.ensure_records("demo-a", desired("demo-a"))) == 2
    assert writes(emulator) == before


@pytest.mark.parametrize(
    "comment",
    [
        pytest.param(None, id="no-comment"),
        pytest.param("owned by the web team", id="other-comment"),
        pytest.param("managed-by=democtl owner=default demo=demo-b", id="another-demo"),
        pytest.param("managed-by=democtl owner=staging demo=demo-a", id="another-owner-id"),
        pytest.param("managed-by=democtl demo=demo-a", id="old-mark-not-adopted"),
    ],
)
def test_a_same_name_record_without_our_mark_is_a_conflict(
    emulator: CloudflareEmulator, dns: CloudflareDns, comment: str | None
) -> None:
    extra = {"comment": comment} if comment else {}
    foreign = emulator.seed_record(
        type="CNAME", name=f"demo-a-portal.{ZONE}", content="other.example.org", **extra
    )

    with pytest.raises(ProviderError) as caught:
        dns.ensure_records("demo-a", desired("demo-a"))

    assert not caught.value.retryable and caught.value.demo_id == "demo-a"
    assert "not ours" in str(caught.value) and f"demo-a-portal.{ZONE}" in str(caught.value)
    assert records_named(emulator, foreign["name"]) == [foreign]
    assert records_named(emulator, f"demo-a-candidate.{ZONE}") == []  # the batch is all or nothing


def test_foreign_records_survive_many_operations(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    foreign = seed_foreign(emulator)
    for round_ in range(3):
        for demo in ("demo-b", "demo-c", "demo-x"):
            dns.ensure_records(demo, desired(demo, target=f"ingress-{round_}.example.net"))
        mine = [r for r in dns.list_records() if r.demo_id == "demo-c"]
        dns.delete_records("demo-c", mine)
    listed = dns.list_records()
    assert {r.demo_id for r in listed} == {"demo-b", "demo-x"}
    after = {r["id"]: r for r in emulator.inspect()["records"]}
    for record in foreign:
        assert after[record["id"]] == record


# --- delete -----------------------------------------------------------------------------


def test_delete_removes_a_demos_records_and_twice_is_success(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    dns.ensure_records("demo-a", desired("demo-a"))
    dns.ensure_records("demo-b", desired("demo-b"))
    mine = [r for r in dns.list_records() if r.demo_id == "demo-a"]

    dns.delete_records("demo-a", mine)
    dns.delete_records("demo-a", mine)  # already gone: success

    assert {r.demo_id for r in dns.list_records()} == {"demo-b"}


def test_delete_refuses_records_not_marked_for_the_demo(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    www = emulator.seed_record(type="CNAME", name=f"www.{ZONE}", content="site.example.org")
    [other] = [r for r in dns.ensure_records("demo-b", desired("demo-b")[:1])]
    unmarked = DnsRecord(www["id"], www["name"], "CNAME", www["content"], False, 1, "", "demo-a")
    for record in (unmarked, other):
        with pytest.raises(ProviderError, match="not marked for this demo"):
            dns.delete_records("demo-a", [record])
    assert len(emulator.inspect()["records"]) == 2
    assert writes(emulator) == 1  # only demo-b's create


# --- faults, credentials, secrets -------------------------------------------------------


def test_rate_limit_is_reported_at_once_without_sleeping(
    emulator: CloudflareEmulator, dns: CloudflareDns
) -> None:
    emulator.set_faults(Faults(rate_limit=1.0, retry_after=300))
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        dns.ensure_records("demo-a", desired("demo-a"))
    assert time.monotonic() - started < 2
    assert caught.value.retryable and caught.value.retry_after == 300
    assert caught.value.status_code == 429 and caught.value.demo_id == "demo-a"
    assert sum(emulator.requests.values()) == 1  # no retry: the token is blocked for minutes


def test_a_429_asking_for_a_short_wait_is_tried_again_within_the_call(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    dns = make_dns(max_retries=4)
    emulator.set_faults(Faults(rate_limit=0.5, retry_after=0, seed=3))
    result = dns.ensure_records("demo-a", desired("demo-a"))
    emulator.set_faults(Faults())
    assert emulator.server.faults_injected["rate_limit"] >= 1
    assert len(result) == 2 and len(emulator.inspect()["records"]) == 2


def test_a_429_asking_for_a_short_wait_every_time_ends_rate_limited_within_the_retries(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    dns = make_dns(max_retries=2)
    emulator.set_faults(Faults(rate_limit=1.0, retry_after=0))
    with pytest.raises(RateLimited) as caught:
        dns.ensure_records("demo-a", desired("demo-a"))
    assert caught.value.retryable and caught.value.retry_after == 0
    assert sum(emulator.requests.values()) == 3  # the first try and two retries, no more


def _refuse_with_retry_after(
    emulator: CloudflareEmulator, monkeypatch: pytest.MonkeyPatch, values: list[str]
) -> None:
    """Answer the next requests 429 with these `Retry-After` values, then as the API does."""
    handler = emulator.server.handler
    pending = list(values)

    def refusing(request: Request) -> Response:
        if pending:
            body = emulator.server.error_body(429, "Too many requests")
            return Response(429, body, {"Retry-After": pending.pop(0)})
        return handler(request)

    monkeypatch.setattr(emulator.server, "handler", refusing)


def test_a_429_whose_retry_after_is_an_http_date_reports_that_wait(
    emulator: CloudflareEmulator, dns: CloudflareDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9110 10.2.3 allows an HTTP-date; read as seconds only it was no answer at all."""
    _refuse_with_retry_after(emulator, monkeypatch, [formatdate(time.time() + 300, usegmt=True)])
    with pytest.raises(RateLimited) as caught:
        dns.ensure_records("demo-a", desired("demo-a"))
    # the date has whole seconds and a moment passes before the adapter reads it
    assert caught.value.retry_after is not None and 290 <= caught.value.retry_after <= 300
    assert sum(emulator.requests.values()) == 1  # a long wait is not waited out in the call


def test_a_429_whose_retry_after_is_a_past_http_date_is_tried_again_at_once(
    emulator: CloudflareEmulator, dns: CloudflareDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_with_retry_after(emulator, monkeypatch, ["Wed, 21 Oct 2015 07:28:00 GMT"])
    result = dns.ensure_records("demo-a", desired("demo-a"))
    assert len(result) == 2 and len(emulator.inspect()["records"]) == 2
    # and the wait of none leaves the next operation free to start
    assert {r.name for r in dns.list_records()} == {r.name for r in result}


def test_a_429_whose_retry_after_is_garbage_has_no_stated_wait(
    emulator: CloudflareEmulator, dns: CloudflareDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_with_retry_after(emulator, monkeypatch, ["soon"])
    with pytest.raises(RateLimited) as caught:
        dns.ensure_records("demo-a", desired("demo-a"))
    assert caught.value.retry_after is None
    assert sum(emulator.requests.values()) == 1


def test_server_errors_are_retried(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    dns = make_dns(max_retries=4)
    emulator.set_faults(Faults(server_error=0.5, seed=3))
    result = dns.ensure_records("demo-a", desired("demo-a"))
    emulator.set_faults(Faults())
    assert emulator.server.faults_injected["server_error"] >= 1
    assert len(result) == 2 and len(emulator.inspect()["records"]) == 2


def test_persistent_server_errors_become_a_retryable_provider_error(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    dns = make_dns(max_retries=0, zone_id=emulator.zone_id)
    emulator.set_faults(Faults(server_error=1.0))
    with pytest.raises(ProviderError) as caught:
        dns.list_records()
    assert caught.value.retryable and caught.value.status_code == 503
    assert "cloudflare list records" in str(caught.value)


def test_environment_credentials_and_proxies_are_ignored(
    emulator: CloudflareEmulator,
    make_dns: Callable[..., CloudflareDns],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOUDFLARE_EMAIL", "someone@example.com")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "global-api-key")
    monkeypatch.setenv("CLOUDFLARE_API_USER_SERVICE_KEY", "service-key")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    dns = make_dns()
    dns.ensure_records("demo-a", desired("demo-a"))  # the emulator accepts only TOKEN

    assert {c["auth"] for c in emulator.calls} == {"bearer"}


def test_state_persists_for_the_next_command(emulator: CloudflareEmulator, tmp_path: Path) -> None:
    with CloudflareEmulator(tmp_path, zone_name=ZONE) as first:
        dns = CloudflareDns(TOKEN, ZONE, base_url=first.api_url, max_retries=0)
        created = dns.ensure_records("demo-a", desired("demo-a"))
        dns.close()
    with CloudflareEmulator(tmp_path, zone_name=ZONE) as second:
        dns = CloudflareDns(TOKEN, ZONE, base_url=second.api_url, max_retries=0)
        assert dns.list_records() == created
        dns.close()
        assert second.inspect()["zone"]["id"] == first.zone_id


def test_unknown_zone_is_a_clear_error(emulator: CloudflareEmulator) -> None:
    dns = CloudflareDns(TOKEN, "nope.example.org", base_url=emulator.api_url, max_retries=0)
    with pytest.raises(ProviderError, match=r"zone nope\.example\.org not found"):
        dns.list_records()


def test_the_token_never_reaches_errors_or_logs(
    emulator: CloudflareEmulator,
    make_dns: Callable[..., CloudflareDns],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dns = make_dns(max_retries=1)
    errors: list[ProviderError] = []
    emulator.seed_record(type="CNAME", name=f"demo-a-portal.{ZONE}", content="other.example.org")
    for action in (
        lambda: dns.ensure_records("demo-a", desired("demo-a")),  # conflict
        lambda: emulator.set_faults(Faults(rate_limit=1.0)) or dns.list_records(),
        lambda: emulator.set_faults(Faults(server_error=1.0)) or dns.list_records(),
        lambda: emulator.set_faults(Faults(drop=1.0)) or dns.list_records(),
    ):
        with pytest.raises(ProviderError) as caught:
            action()
        errors.append(caught.value)
    emulator.set_faults(Faults())
    wrong = CloudflareDns("wrong-" + TOKEN, ZONE, base_url=emulator.api_url, max_retries=0)
    with pytest.raises(ProviderError) as caught:
        wrong.list_records()
    errors.append(caught.value)

    # ProviderError, RateLimited and Conflict (the foreign record)
    assert {type(e) for e in errors} == {ProviderError, RateLimited, Conflict}
    for error in errors:
        assert TOKEN not in f"{error} {error!r} {error.args} {error.upstream_message}"
        # No SDK exception (holding the request and its headers) rides along.
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
    assert TOKEN not in caplog.text and "SECRET" not in caplog.text
    assert TOKEN not in repr(dns)
    state = emulator.state_path.read_text()
    assert ZONE in state and TOKEN not in state


# --- names taken by a record of another type (Cloudflare's same-name rules) -----------

HOST_TAKEN = "An A, AAAA, or CNAME record with that host already exists."
CNAME_TAKEN = "A CNAME record with that host already exists."


def _raw_create(emulator: CloudflareEmulator, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{emulator.api_url}/zones/{emulator.zone_id}/dns_records",
        json={"proxied": False, "ttl": 1, **body},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


@pytest.mark.parametrize(
    "existing, new, code, message",
    [
        pytest.param(("A", "192.0.2.1"), ("CNAME", TARGET), 81053, HOST_TAKEN, id="cname-on-a"),
        pytest.param(("AAAA", "2001:db8::1"), ("CNAME", TARGET), 81053, HOST_TAKEN, id="on-aaaa"),
        pytest.param(("CNAME", "x.example.org"), ("CNAME", TARGET), 81053, HOST_TAKEN, id="cname"),
        pytest.param(("CNAME", TARGET), ("A", "192.0.2.1"), 81054, CNAME_TAKEN, id="a-on-cname"),
        pytest.param(("CNAME", TARGET), ("AAAA", "2001:db8::1"), 81054, CNAME_TAKEN, id="aaaa"),
    ],
)  # fmt: skip
def test_the_emulator_refuses_a_name_taken_by_another_type(
    emulator: CloudflareEmulator,
    existing: tuple[str, str],
    new: tuple[str, str],
    code: int,
    message: str,
) -> None:
    name = f"taken.{ZONE}"
    emulator.seed_record(type=existing[0], name=name, content=existing[1])
    answer = _raw_create(emulator, type=new[0], name=name, content=new[1])
    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert error["code"] == code and error["message"].startswith(message)
    assert answer.json()["success"] is False and answer.json()["result"] is None
    assert [r["type"] for r in records_named(emulator, name)] == [existing[0]]


def test_a_and_aaaa_share_a_name(emulator: CloudflareEmulator) -> None:
    emulator.seed_record(type="A", name=f"both.{ZONE}", content="192.0.2.1")
    assert _raw_create(emulator, type="AAAA", name="both", content="2001:db8::1").is_success


@pytest.mark.parametrize(
    "foreign_type, content, wanted_type, target",
    [
        pytest.param("A", "198.51.100.9", "CNAME", TARGET, id="our-cname-on-their-a-81053"),
        pytest.param("CNAME", "other.example.org", "A", "192.0.2.10", id="our-a-on-cname-81054"),
        pytest.param("CNAME", "other.example.org", "AAAA", "2001:db8::10", id="our-aaaa-81054"),
    ],
)  # fmt: skip
def test_a_name_taken_by_another_type_is_a_conflict_never_adopted_or_deleted(
    emulator: CloudflareEmulator,
    make_dns: Callable[..., CloudflareDns],
    foreign_type: str,
    content: str,
    wanted_type: str,
    target: str,
) -> None:
    name = f"demo-a-portal.{ZONE}"
    foreign = emulator.seed_record(type=foreign_type, name=name, content=content)
    wanted = [DesiredRecord("demo-a", name, wanted_type, target, False)]
    for dns in (make_dns(), make_dns(use_batch=False)):
        with pytest.raises(Conflict) as caught:
            dns.ensure_records("demo-a", wanted)
        message = str(caught.value)
        assert f"{foreign_type} {name} exists and is not ours" in message
        assert f"{wanted_type} {name} cannot be created" in message
        assert not caught.value.retryable and caught.value.demo_id == "demo-a"
    assert records_named(emulator, name) == [foreign]  # untouched, not adopted
    assert dns.list_records() == []


# --- ownership per installation (owner id) -----------------------------------------------


def test_installations_with_another_owner_id_never_see_or_touch_each_others_records(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    prod = make_dns(owner=Owner("prod"))
    staging = make_dns(owner=Owner("staging"))
    ours = prod.ensure_records("demo-a", desired("demo-a"))
    assert {r.comment for r in ours} == {"managed-by=democtl owner=prod demo=demo-a"}

    assert staging.list_records() == []
    assert [r.id for r in prod.list_records()] == [r.id for r in ours]
    with pytest.raises(ProviderError, match="not marked for this demo"):
        staging.delete_records("demo-a", ours)
    # the same demo id in the other installation: the hostnames are taken, a conflict
    with pytest.raises(Conflict, match="not ours"):
        staging.ensure_records("demo-a", desired("demo-a"))
    assert {r["comment"] for r in emulator.inspect()["records"]} == {ours[0].comment}


def test_old_marks_are_adopted_and_re_marked_only_when_the_settings_say_so(
    emulator: CloudflareEmulator, make_dns: Callable[..., CloudflareDns]
) -> None:
    old = [
        emulator.seed_record(
            type="CNAME", name=r.name, content=TARGET, proxied=True, ttl=1,
            comment="managed-by=democtl demo=demo-a",
        )
        for r in desired("demo-a")
    ]  # fmt: skip
    assert make_dns().list_records() == []  # foreign to an installation that does not adopt

    adopting = make_dns(owner=Owner("default", adopt_unowned=True))
    assert sorted(r.id for r in adopting.list_records()) == sorted(r["id"] for r in old)
    kept = adopting.ensure_records("demo-a", desired("demo-a"))
    assert sorted(r.id for r in kept) == sorted(r["id"] for r in old)  # updated, not re-created
    assert {r["comment"] for r in emulator.inspect()["records"]} == {
        "managed-by=democtl owner=default demo=demo-a"
    }
    before = writes(emulator)
    adopting.ensure_records("demo-a", desired("demo-a"))
    assert writes(emulator) == before  # re-marked once, then a no-op
    assert [r.id for r in make_dns().list_records()] != []  # now the default owner's own
