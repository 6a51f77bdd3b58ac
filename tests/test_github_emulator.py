"""The GitHub emulator answers as GitHub does, checked against the REST subset spec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_core.exceptions import OpenAPIError

from reconciler.local.github_emulator import GitHubEmulator
from reconciler.local.server import Request, Response
from tests.github_support import REPO, TOKEN, Recorder, check_exchange, running_emulator


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    yield from running_emulator()


def _http(emulator: GitHubEmulator, auth: str | None = f"Bearer {TOKEN}") -> httpx.Client:
    headers = {"X-GitHub-Api-Version": "2022-11-28"}
    if auth:
        headers["Authorization"] = auth
    return httpx.Client(base_url=emulator.url, headers=headers, trust_env=False)


def test_every_answer_follows_the_spec(emulator: GitHubEmulator) -> None:
    recorder = Recorder()
    recorder.attach(emulator)
    number = emulator.open_pull_request(REPO, "demo-acme01")
    emulator.add_branch(REPO, "demo-beta02")
    with _http(emulator) as http:
        http.get(f"/repos/{REPO}")
        created = http.post(f"/repos/{REPO}/issues/{number}/comments", json={"body": "one"})
        http.get(f"/repos/{REPO}/issues/{number}/comments", params={"per_page": "1"})
        http.patch(f"/repos/{REPO}/issues/comments/{created.json()['id']}", json={"body": "two"})
        pull = {"head": "demo-beta02", "base": "main", "title": "Add demo-beta02", "body": "x"}
        http.post(f"/repos/{REPO}/pulls", json=pull)
        http.post(f"/repos/{REPO}/pulls", json=pull)  # 422: exists
        http.post(f"/repos/{REPO}/pulls", json={**pull, "head": "main"})  # 422: no commits
        http.get("/repos/splits-network/elsewhere")  # 404
        http.patch(f"/repos/{REPO}/issues/comments/999", json={"body": "x"})  # 404
    with _http(emulator, auth=None) as http:
        http.get(f"/repos/{REPO}")  # 401
    statuses = sorted(r.status for _, r in recorder.exchanges)
    assert statuses == [200, 200, 200, 201, 201, 401, 404, 404, 422, 422]
    for request, response in recorder.exchanges:
        try:
            check_exchange(request, response)
        except OpenAPIError as exc:  # pragma: no cover - reported with its cause
            pytest.fail(f"{request.method} {request.path}: {exc!r} {exc.__cause__!r}")


def _exchange(method: str, path: str, body: Any, status: int, answer: Any) -> None:
    request = Request(
        method,
        path,
        {},
        {"authorization": "Bearer x"},
        json.dumps(body).encode() if body is not None else b"",
    )
    check_exchange(request, Response(status, answer))


def test_the_checker_rejects_what_the_spec_forbids() -> None:
    with pytest.raises(OpenAPIError):  # a comment without its body
        _exchange("POST", f"/repos/{REPO}/issues/1/comments", {"text": "x"}, 201, {})
    with pytest.raises(OpenAPIError):  # a created comment missing the required fields
        _exchange("POST", f"/repos/{REPO}/issues/1/comments", {"body": "x"}, 201, {"id": 1})
    with pytest.raises(AssertionError):  # an undocumented error without GitHub's body
        _exchange("GET", f"/repos/{REPO}", None, 401, {"error": "no"})


@pytest.mark.parametrize(
    "auth, status, message",
    [
        pytest.param(None, 401, "Requires authentication", id="no-authorization"),
        pytest.param(
            "Basic dXNlcjpwYXNz", 401, "Requires authentication", id="basic-is-not-a-token"
        ),
        pytest.param(f"token {TOKEN}", 200, None, id="token-scheme"),
        pytest.param(f"Bearer {TOKEN}", 200, None, id="bearer-scheme"),
    ],
)
def test_authorization_is_required(
    emulator: GitHubEmulator, auth: str | None, status: int, message: str | None
) -> None:
    with _http(emulator, auth=auth) as http:
        response = http.get(f"/repos/{REPO}")
    assert response.status_code == status
    if message:
        assert response.json()["message"] == message


def test_only_configured_tokens_are_accepted() -> None:
    with GitHubEmulator((REPO,), tokens={TOKEN: "democtl[bot]"}) as emulator:
        with _http(emulator, auth="Bearer wrong") as http:
            assert http.get(f"/repos/{REPO}").json()["message"] == "Bad credentials"
        number = emulator.open_pull_request(REPO, "demo-x")
        with _http(emulator) as http:
            http.post(f"/repos/{REPO}/issues/{number}/comments", json={"body": "hi"})
        assert emulator.comments(REPO, number)[0]["user"] == "democtl[bot]"


def test_an_api_version_github_does_not_serve_is_refused(emulator: GitHubEmulator) -> None:
    with _http(emulator) as http:
        ok = http.get(f"/repos/{REPO}")
        refused = http.get(f"/repos/{REPO}", headers={"X-GitHub-Api-Version": "2021-01-01"})
    assert ok.headers["X-GitHub-Api-Version-Selected"] == "2022-11-28"
    assert refused.status_code == 400
    assert "X-GitHub-Api-Version" in refused.json()["message"]


def test_comments_are_paginated_with_a_link_header(emulator: GitHubEmulator) -> None:
    number = emulator.open_pull_request(REPO, "demo-x")
    for i in range(5):
        emulator.add_comment(REPO, number, f"comment {i}")
    path = f"/repos/{REPO}/issues/{number}/comments"
    with _http(emulator) as http:
        first = http.get(path, params={"per_page": "2"})
        middle = http.get(path, params={"per_page": "2", "page": "2"})
        last = http.get(path, params={"per_page": "2", "page": "3"})
        single = http.get(path)
    assert [c["body"] for c in first.json()] == ["comment 0", "comment 1"]
    assert first.links["next"]["url"].endswith("per_page=2&page=2")
    assert first.links["last"]["url"].endswith("per_page=2&page=3")
    assert set(middle.links) == {"prev", "first", "next", "last"}
    assert [c["body"] for c in last.json()] == ["comment 4"]
    assert set(last.links) == {"prev", "first"}
    assert len(single.json()) == 5 and "Link" not in single.headers  # default 30 a page


def test_per_page_is_capped_at_100(emulator: GitHubEmulator) -> None:
    number = emulator.open_pull_request(REPO, "demo-x")
    for i in range(101):
        emulator.add_comment(REPO, number, f"c{i}")
    with _http(emulator) as http:
        response = http.get(f"/repos/{REPO}/issues/{number}/comments", params={"per_page": "500"})
    assert len(response.json()) == 100
    assert "next" in response.links


@pytest.mark.parametrize(
    "pull, message",
    [
        pytest.param(
            {"head": "main", "base": "main", "title": "t"},
            "No commits between main and main",
            id="head-equals-base",
        ),
        pytest.param(
            {"head": "demo-open", "base": "main", "title": "t"},
            "A pull request already exists for splits-network:demo-open.",
            id="already-open",
        ),
        pytest.param(
            {"head": "splits-network:demo-open", "base": "main", "title": "t"},
            "A pull request already exists for splits-network:demo-open.",
            id="already-open-owner-prefixed",
        ),
    ],
)
def test_pull_request_validation_failures(
    emulator: GitHubEmulator, pull: dict[str, str], message: str
) -> None:
    emulator.open_pull_request(REPO, "demo-open")
    with _http(emulator) as http:
        response = http.post(f"/repos/{REPO}/pulls", json=pull)
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "Validation Failed"
    assert body["errors"] == [{"resource": "PullRequest", "code": "custom", "message": message}]


@pytest.mark.parametrize(
    "pull, field, code",
    [
        pytest.param({"base": "main", "title": "t"}, "head", "missing_field", id="no-head"),
        pytest.param(
            {"head": "nope", "base": "main", "title": "t"}, "head", "invalid", id="no-such-head"
        ),
        pytest.param(
            {"head": "x", "base": "nope", "title": "t"}, "base", "invalid", id="no-such-base"
        ),
    ],
)
def test_pull_request_field_errors(
    emulator: GitHubEmulator, pull: dict[str, str], field: str, code: str
) -> None:
    emulator.add_branch(REPO, "x")
    with _http(emulator) as http:
        response = http.post(f"/repos/{REPO}/pulls", json=pull)
    assert response.status_code == 422
    assert {"field": field, "code": code}.items() <= response.json()["errors"][0].items()


def test_comments_on_unknown_pull_requests_and_empty_bodies_are_refused(
    emulator: GitHubEmulator,
) -> None:
    number = emulator.open_pull_request(REPO, "demo-x")
    with _http(emulator) as http:
        missing = http.post(f"/repos/{REPO}/issues/{number + 1}/comments", json={"body": "x"})
        empty = http.post(f"/repos/{REPO}/issues/{number}/comments", json={"body": ""})
        long = http.post(f"/repos/{REPO}/issues/{number}/comments", json={"body": "x" * 65537})
    assert missing.status_code == 404
    assert empty.status_code == 422 and empty.json()["errors"][0]["code"] == "missing_field"
    assert long.status_code == 422 and "too long" in long.json()["errors"][0]["message"]
    assert emulator.comments(REPO, number) == []


def test_tokens_are_never_recorded(emulator: GitHubEmulator) -> None:
    with _http(emulator) as http:
        http.get(f"/repos/{REPO}")
    assert TOKEN not in repr(list(emulator.calls))
    assert emulator.calls[-1]["auth"] == "bearer"


def test_tracked_branches_are_read_when_a_pull_request_is_opened(
    emulator: GitHubEmulator,
) -> None:
    """With a source (the bare origin in the --pr tests), a head exists once it is there."""
    pushed: set[str] = set()
    emulator.track_branches(REPO, lambda: set(pushed))
    with _http(emulator) as http:
        pull = {"head": "democtl/x", "base": "main", "title": "t"}
        before = http.post(f"/repos/{REPO}/pulls", json=pull)
        pushed.add("democtl/x")
        after = http.post(f"/repos/{REPO}/pulls", json=pull)
    assert before.status_code == 422
    assert before.json()["errors"] == [
        {"resource": "PullRequest", "field": "head", "code": "invalid"}
    ]
    assert after.status_code == 201
    assert after.json()["head"]["ref"] == "democtl/x"
