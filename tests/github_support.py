"""What the GitHub tests share: the REST subset spec as a checker, and a recording emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.testing import MockRequest, MockResponse

from reconciler.local.github_emulator import GitHubEmulator
from reconciler.local.server import Request, Response
from reconciler.providers.github import GitHubClient
from reconciler.providers.http import RetryPolicy

SPEC_PATH = Path(__file__).resolve().parent / "contracts" / "specs" / "github-rest.subset.json"
HOST = "https://api.github.com"  # the spec's server; the emulator's address is not in it
REPO = "splits-network/demos"
TOKEN = "ghs_test-token-0123456789"


@cache
def spec() -> OpenAPI:
    return OpenAPI.from_dict(
        json.loads(SPEC_PATH.read_text()), config=Config(spec_validator_cls=None)
    )


def check_exchange(request: Request, response: Response) -> None:
    """Raise unless the request and the answer are what the spec's operation allows.

    A status the spec does not document for the operation (401, a 404 on a create) must
    still carry GitHub's `basic-error` body.
    """
    query = [(k, v) for k, values in request.query.items() for v in values]
    mock = MockRequest(
        HOST,
        request.method,
        request.path,
        args=query,  # type: ignore[arg-type]
        headers={k.title(): v for k, v in request.headers.items() if k == "authorization"},
        data=request.body or None,
    )
    spec().validate_request(mock)
    answer = MockResponse(
        response.encoded(), status_code=response.status, content_type="application/json"
    )
    try:
        spec().validate_response(mock, answer)
    except ResponseNotFound:
        assert response.status >= 400, f"{request.method} {request.path}: {response.status}"
        body = response.body
        assert isinstance(body, dict), body
        assert isinstance(body.get("message"), str), body
        assert isinstance(body.get("documentation_url"), str), body


@dataclass
class Recorder:
    exchanges: list[tuple[Request, Response]] = field(default_factory=list)

    def attach(self, emulator: GitHubEmulator) -> None:
        handler = emulator.server.handler

        def recording(request: Request) -> Response:
            response = handler(request)
            self.exchanges.append((request, response))
            return response

        emulator.server.handler = recording


def client_for(emulator: GitHubEmulator, **kwargs: Any) -> GitHubClient:
    return GitHubClient(emulator.url, TOKEN, REPO, retry=RetryPolicy.no_wait(), **kwargs)


def running_emulator() -> Iterator[GitHubEmulator]:
    with GitHubEmulator((REPO,)) as emulator:
        yield emulator
