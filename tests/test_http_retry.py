"""The one retry mechanism (providers/http.py) over real loopback HTTP, sleeping switched off."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from reconciler.local.server import EmulatorServer, Faults, Request, Response
from reconciler.providers.budget import parse_retry_after
from reconciler.providers.http import RetryPolicy, make_client


@dataclass
class Script:
    """Answers from a list, then 200; counts what it saw."""

    answers: list[Response] = field(default_factory=list)
    seen: int = 0

    def handle(self, request: Request) -> Response:
        self.seen += 1
        if self.answers:
            return self.answers.pop(0)
        return Response(200, {"ok": True})


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[Script, EmulatorServer]]:
    s = Script()
    with EmulatorServer("script", s.handle) as server:  # stopping takes 0.5s: once per module
        yield s, server


@pytest.fixture
def script(_server: tuple[Script, EmulatorServer]) -> tuple[Script, EmulatorServer]:
    s, server = _server
    s.answers, s.seen = [], 0
    return s, server


def policy(sleeps: list[float], attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(
        attempts=attempts,
        base_delay=1.0,
        max_delay=10.0,
        jitter=0.5,
        sleep=sleeps.append,
        rng=random.Random(1),
    )


def send(server: EmulatorServer, retry: RetryPolicy, method: str = "GET") -> httpx.Response:
    with make_client(server.url, timeout=2.0) as client:
        return retry.send(client, client.build_request(method, "/thing"))


@pytest.mark.parametrize(
    "answers, expected_sleeps",
    [
        pytest.param(
            [Response(429, {}, {"Retry-After": "3"})], [3.0], id="429-honours-retry-after"
        ),
        pytest.param([Response(503, {}), Response(502, {})], None, id="5xx-backs-off"),
    ],
)
def test_retryable_answers_are_retried(
    script: tuple[Script, EmulatorServer],
    answers: list[Response],
    expected_sleeps: list[float] | None,
) -> None:
    s, server = script
    s.answers = list(answers)
    sleeps: list[float] = []
    assert send(server, policy(sleeps)).status_code == 200
    assert s.seen == len(answers) + 1
    if expected_sleeps is not None:
        assert sleeps == expected_sleeps
    else:  # jittered exponential: attempt n waits within [base*2^(n-1)/2, base*2^(n-1)]
        assert len(sleeps) == 2
        assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_a_429_longer_than_max_delay_is_not_retried_inside_its_window(
    script: tuple[Script, EmulatorServer],
) -> None:
    """Retrying before Retry-After only burns the bucket (Supabase refuses the rest of the
    minute): the answer goes back to the caller, who leaves the work for a later cycle."""
    s, server = script
    s.answers = [Response(429, {}, {"Retry-After": "120"})]
    sleeps: list[float] = []
    assert send(server, policy(sleeps)).status_code == 429
    assert s.seen == 1 and sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_mistakes_are_never_retried(script: tuple[Script, EmulatorServer], status: int) -> None:
    s, server = script
    s.answers = [Response(status, {"message": "no"})]
    sleeps: list[float] = []
    assert send(server, policy(sleeps)).status_code == status
    assert s.seen == 1 and sleeps == []


def test_attempts_are_bounded_and_the_last_answer_returned(
    script: tuple[Script, EmulatorServer],
) -> None:
    s, server = script
    s.answers = [Response(503, {}) for _ in range(10)]
    sleeps: list[float] = []
    assert send(server, policy(sleeps, attempts=3)).status_code == 503
    assert s.seen == 3 and len(sleeps) == 2


def test_dropped_connections_are_retried_then_raised() -> None:
    s = Script()
    with EmulatorServer("drop", s.handle, faults=Faults(drop=1.0)) as server:
        sleeps: list[float] = []
        with pytest.raises(httpx.HTTPError):
            send(server, policy(sleeps, attempts=3))
        assert server.requests["GET /thing"] == 3 and len(sleeps) == 2
        assert server.faults_injected["drop"] == 3


def test_timeouts_are_retried() -> None:
    s = Script()
    faults = Faults(timeout=1.0, timeout_seconds=0.3)
    with EmulatorServer("slow", s.handle, faults=faults) as server:
        sleeps: list[float] = []
        with make_client(server.url, timeout=0.1) as client, pytest.raises(httpx.HTTPError):
            policy(sleeps, attempts=2).send(client, client.build_request("GET", "/thing"))
        assert server.requests["GET /thing"] == 2 and len(sleeps) == 1


def test_a_create_is_not_repeated_after_an_ambiguous_failure(
    script: tuple[Script, EmulatorServer],
) -> None:
    s, server = script
    s.answers = [Response(503, {})]
    sleeps: list[float] = []
    with make_client(server.url) as client:
        request = client.build_request("POST", "/thing", json={})
        assert policy(sleeps).send(client, request, idempotent=False).status_code == 503
    assert s.seen == 1
    s.answers = [Response(429, {}, {"Retry-After": "1"})]  # refused, so safe to repeat
    with make_client(server.url) as client:
        request = client.build_request("POST", "/thing", json={})
        assert policy(sleeps).send(client, request, idempotent=False).status_code == 200
    assert s.seen == 3


def test_proxies_in_the_environment_do_not_capture_loopback(
    script: tuple[Script, EmulatorServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, server = script
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert send(server, RetryPolicy.no_wait(attempts=1)).status_code == 200


@pytest.mark.parametrize(
    "value, expected",
    [
        ("5", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 25 Nov 2026 12:00:30 GMT", 30.0),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = 1_795_608_000.0  # 2026-11-25T12:00:00Z
    assert parse_retry_after(value, now=now) == expected


def test_policy_needs_one_attempt() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
