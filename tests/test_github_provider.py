"""The GitHub adapter against the emulator: one sticky comment, pull requests, errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from openapi_core.exceptions import OpenAPIError

from reconciler.local.github_emulator import GitHubEmulator
from reconciler.local.server import Faults, Request, Response
from reconciler.providers.base import ProviderError, RateLimited
from reconciler.providers.github import (
    COMMENT_MAX,
    PLAN_MARKER,
    GitHubClient,
)
from reconciler.providers.http import RetryPolicy
from tests.github_support import REPO, TOKEN, Recorder, check_exchange, client_for, running_emulator

COMMENTS = "GET /repos/{owner}/{repo}/issues/{issue_number}/comments"
CREATE = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments"
UPDATE = "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}"


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    yield from running_emulator()


@pytest.fixture
def client(emulator: GitHubEmulator) -> Iterator[GitHubClient]:
    with client_for(emulator) as client:
        yield client


def test_the_sticky_comment_is_created_once_then_updated_in_place(
    emulator: GitHubEmulator, client: GitHubClient
) -> None:
    number = emulator.open_pull_request(REPO, "demo-acme01")
    first = client.upsert_sticky_comment(number, PLAN_MARKER, "plan one")
    second = client.upsert_sticky_comment(number, PLAN_MARKER, "plan two")
    third = client.upsert_sticky_comment(number, PLAN_MARKER, "plan two")
    assert (first.outcome, second.outcome, third.outcome) == ("created", "updated", "unchanged")
    assert first.id == second.id == third.id
    comments = emulator.comments(REPO, number)
    assert [c["body"] for c in comments] == [f"{PLAN_MARKER}\nplan two"]
    assert emulator.requests[CREATE] == 1 and emulator.requests[UPDATE] == 1


def test_the_marker_is_found_on_any_page(emulator: GitHubEmulator, client: GitHubClient) -> None:
    number = emulator.open_pull_request(REPO, "demo-acme01")
    for i in range(150):  # a busy review: the bot's comment sits on page 3 of 100
        emulator.add_comment(REPO, number, f"review {i}")
    emulator.add_comment(REPO, number, "quoting it: > " + PLAN_MARKER)  # not at the start
    for i in range(100):
        emulator.add_comment(REPO, number, f"later {i}")
    created = client.upsert_sticky_comment(number, PLAN_MARKER, "plan one")
    emulator.requests.clear()
    updated = client.upsert_sticky_comment(number, PLAN_MARKER, "plan two")
    assert created.outcome == "created" and updated.outcome == "updated"
    assert updated.id == created.id
    assert emulator.requests[COMMENTS] == 3  # 252 comments, 100 a page, every page read
    assert emulator.requests[CREATE] == 0
    bodies = [c["body"] for c in emulator.comments(REPO, number)]
    assert sum(b.startswith(PLAN_MARKER) for b in bodies) == 1


def test_another_marker_is_another_comment(emulator: GitHubEmulator, client: GitHubClient) -> None:
    number = emulator.open_pull_request(REPO, "demo-acme01")
    client.upsert_sticky_comment(number, "<!-- other-tool -->", "theirs")
    client.upsert_sticky_comment(number, PLAN_MARKER, "ours")
    assert len(emulator.comments(REPO, number)) == 2


def test_a_body_over_the_limit_is_truncated_not_refused(
    emulator: GitHubEmulator, client: GitHubClient
) -> None:
    number = emulator.open_pull_request(REPO, "demo-acme01")
    client.upsert_sticky_comment(number, PLAN_MARKER, "x" * (COMMENT_MAX + 10))
    (comment,) = emulator.comments(REPO, number)
    assert len(comment["body"]) <= COMMENT_MAX
    assert comment["body"].startswith(PLAN_MARKER) and "truncated" in comment["body"]


def test_requests_and_answers_follow_the_spec(
    emulator: GitHubEmulator, client: GitHubClient
) -> None:
    recorder = Recorder()
    recorder.attach(emulator)
    number = emulator.open_pull_request(REPO, "demo-acme01")
    for i in range(3):
        emulator.add_comment(REPO, number, f"review {i}")
    client.upsert_sticky_comment(number, PLAN_MARKER, "plan one")
    client.upsert_sticky_comment(number, PLAN_MARKER, "plan two")
    emulator.add_branch(REPO, "demo-beta02")
    assert client.default_branch() == "main"
    url = client.open_pull_request("demo-beta02", "main", "Add demo-beta02", "body")
    assert url == "https://github.com/splits-network/demos/pull/2"
    with pytest.raises(ProviderError):
        client.open_pull_request("demo-beta02", "main", "Add demo-beta02", "body")
    assert len(recorder.exchanges) == 7
    for request, response in recorder.exchanges:
        assert request.headers["x-github-api-version"] == "2022-11-28"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        try:
            check_exchange(request, response)
        except OpenAPIError as exc:  # pragma: no cover - reported with its cause
            pytest.fail(f"{request.method} {request.path}: {exc!r} {exc.__cause__!r}")


@pytest.mark.parametrize(
    "head, base, message",
    [
        pytest.param("demo-open", "main", "A pull request already exists", id="exists"),
        pytest.param("main", "main", "No commits between main and main", id="same-branch"),
    ],
)
def test_pull_request_refusals_are_provider_errors(
    emulator: GitHubEmulator, client: GitHubClient, head: str, base: str, message: str
) -> None:
    emulator.open_pull_request(REPO, "demo-open")
    with pytest.raises(ProviderError, match=message) as caught:
        client.open_pull_request(head, base, "t", "b")
    assert caught.value.status_code == 422 and not caught.value.retryable


def test_unknown_repository_and_bad_token_are_clear_errors(emulator: GitHubEmulator) -> None:
    with (
        GitHubClient(emulator.url, TOKEN, "splits-network/nope", retry=RetryPolicy.no_wait()) as c,
        pytest.raises(ProviderError, match=r"HTTP 404.*GITHUB_REPOSITORY=splits-network/nope"),
    ):
        c.default_branch()
    with GitHubEmulator((REPO,), tokens={"ghs_right": "github-actions[bot]"}) as strict:
        with (
            GitHubClient(strict.url, TOKEN, REPO, retry=RetryPolicy.no_wait()) as c,
            pytest.raises(
                ProviderError, match="HTTP 401: Bad credentials; check GITHUB_TOKEN"
            ) as e,
        ):
            c.default_branch()
        assert TOKEN not in str(e.value)


def test_transient_failures_are_retried_by_the_transport(emulator: GitHubEmulator) -> None:
    number = emulator.open_pull_request(REPO, "demo-acme01")
    emulator.set_faults(Faults(server_error=0.5, seed=3, only="/comments"))
    with client_for(emulator) as client:
        for i in range(5):
            client.upsert_sticky_comment(number, PLAN_MARKER, f"plan {i}")
    assert emulator.server.faults_injected["server_error"] > 0
    assert len(emulator.comments(REPO, number)) == 1


def test_rate_limits_become_rate_limited(emulator: GitHubEmulator) -> None:
    number = emulator.open_pull_request(REPO, "demo-acme01")
    emulator.set_faults(Faults(rate_limit=1.0, retry_after=7))
    with (
        client_for(emulator) as client,
        pytest.raises(RateLimited) as caught,
    ):
        client.upsert_sticky_comment(number, PLAN_MARKER, "plan")
    assert caught.value.retry_after == 7


def test_configuration_comes_from_the_workflow_environment(emulator: GitHubEmulator) -> None:
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": emulator.url}
    with GitHubClient.from_environment(env, retry=RetryPolicy.no_wait()) as client:
        assert client.default_branch() == "main"
        assert TOKEN not in repr(client)
    assert GitHubClient.from_environment(
        {"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": REPO}
    ).api_url == ("https://api.github.com")
    with pytest.raises(ProviderError, match="GITHUB_TOKEN is not set"):
        GitHubClient.from_environment({"GITHUB_REPOSITORY": REPO})
    with pytest.raises(ProviderError, match="not owner/name"):
        GitHubClient.from_environment({"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "nope"})


def test_the_token_never_reaches_a_log_line(
    emulator: GitHubEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    number = emulator.open_pull_request(REPO, "demo-acme01")
    emulator.set_faults(Faults(server_error=0.5, seed=1))
    with client_for(emulator) as client:
        client.upsert_sticky_comment(number, PLAN_MARKER, "plan")
    assert caplog.records
    assert TOKEN not in caplog.text


def test_a_next_page_on_another_host_is_not_followed(emulator: GitHubEmulator) -> None:
    number = emulator.open_pull_request(REPO, "demo-acme01")
    handler = emulator.server.handler

    def elsewhere(request: Request) -> Response:
        response = handler(request)
        if request.method == "GET" and request.path.endswith("/comments"):
            response.headers["Link"] = f'<https://evil.example{request.path}>; rel="next"'
        return response

    emulator.server.handler = elsewhere
    with (
        client_for(emulator) as client,
        pytest.raises(ProviderError, match="another host"),
    ):
        client.upsert_sticky_comment(number, PLAN_MARKER, "plan")
    assert emulator.comments(REPO, number) == []


def test_a_create_whose_answer_is_lost_is_adopted_not_repeated(emulator: GitHubEmulator) -> None:
    number = emulator.open_pull_request(REPO, "demo-acme01")
    handler = emulator.server.handler
    lost = []

    def lose_first_create(request: Request) -> Response:
        response = handler(request)
        if request.method == "POST" and not lost:
            lost.append(request.path)
            response.drop = True  # applied, the answer never arrives
        return response

    emulator.server.handler = lose_first_create
    with client_for(emulator) as client:
        result = client.upsert_sticky_comment(number, PLAN_MARKER, "plan")
    assert lost and result.outcome == "unchanged"
    assert len(emulator.comments(REPO, number)) == 1
