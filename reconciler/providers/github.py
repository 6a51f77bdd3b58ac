"""The GitHub adapter: one sticky pull-request comment and opening pull requests, over httpx.

Owns `GitHubClient`, which implements the `PullRequestHost` Protocol against the
REST API of `X-GitHub-Api-Version: 2022-11-28` (issue comments list, create and
update; pull request create; repository get), and the conversion of its errors
into `ProviderError` and `RateLimited` at this edge. Knows nothing of demos or
plans: it writes the text it is given. Retries live in
`providers.http.RetryPolicy`, nowhere else. The token never appears in a log
line or an exception message.

May import: httpx, `reconciler.providers.base`, `reconciler.providers.budget` (its
`Retry-After` parser), `reconciler.providers.http`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from reconciler.providers.base import ProviderError, RateLimited
from reconciler.providers.budget import parse_retry_after
from reconciler.providers.http import RetryPolicy, make_client

logger = logging.getLogger(__name__)

PROVIDER = "github"
TOKEN_ENV = "GITHUB_TOKEN"  # noqa: S105 (the variable name, not a token)
REPOSITORY_ENV = "GITHUB_REPOSITORY"
API_URL_ENV = "GITHUB_API_URL"
DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PLAN_MARKER = "<!-- democtl-plan -->"
PER_PAGE = 100  # the API's maximum: fewest pages
COMMENT_MAX = 65536  # GitHub refuses longer comment bodies with 422
_TRUNCATED = "\n\n… truncated: the comment limit is 65536 characters; the job summary has it all.\n"
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


@dataclass(frozen=True)
class StickyComment:
    id: int
    url: str  # html_url, for people
    outcome: Literal["created", "updated", "unchanged"]


class PullRequestHost(Protocol):
    def upsert_sticky_comment(self, pr_number: int, marker: str, body: str) -> StickyComment:
        """The one comment whose body starts with `marker`: updated in place, created if absent."""

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> str:
        """Open a pull request from branch `head` into `base`; return its html_url."""

    def default_branch(self) -> str: ...


class GitHubClient:
    """`PullRequestHost` for one repository on github.com (or GHES, or the emulator)."""

    def __init__(
        self,
        api_url: str,
        token: str,
        repository: str,
        *,
        retry: RetryPolicy,
        timeout: float = 30.0,
    ) -> None:
        if not token:
            raise ProviderError(PROVIDER, "configure", f"{TOKEN_ENV} is empty")
        if not _REPOSITORY.match(repository):
            raise ProviderError(
                PROVIDER, "configure", f"{REPOSITORY_ENV}={repository!r} is not owner/name"
            )
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self.retry = retry
        self._token = token
        self._client = make_client(
            self.api_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "democtl",
            },
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"GitHubClient(api_url={self.api_url!r}, repository={self.repository!r})"

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> GitHubClient:
        """GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_API_URL, as a workflow job has them."""
        env = os.environ if environ is None else environ
        token = env.get(TOKEN_ENV, "")
        if not token:
            raise ProviderError(
                PROVIDER,
                "configure",
                f"{TOKEN_ENV} is not set; pass it to the step: env: {TOKEN_ENV}: "
                "${{ github.token }}",
            )
        repository = env.get(REPOSITORY_ENV, "")
        if not repository:
            raise ProviderError(PROVIDER, "configure", f"{REPOSITORY_ENV} is not set (owner/name)")
        return cls(
            env.get(API_URL_ENV) or DEFAULT_API_URL,
            token,
            repository,
            retry=retry or RetryPolicy(),
            timeout=timeout,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the Protocol ---------------------------------------------------------------

    def default_branch(self) -> str:
        response = self._call("GET", f"/repos/{self.repository}", "get repository")
        data = self._json(response, "get repository")
        if not isinstance(data, dict) or not isinstance(data.get("default_branch"), str):
            raise ProviderError(PROVIDER, "get repository", "answer has no default_branch")
        return str(data["default_branch"])

    def upsert_sticky_comment(self, pr_number: int, marker: str, body: str) -> StickyComment:
        if not marker.strip():
            raise ProviderError(PROVIDER, "comment", "the marker is empty")
        text = _with_marker(marker, body)
        existing = self._find_comment(pr_number, marker)
        if existing is None:
            try:
                return self._create_comment(pr_number, text)
            except RateLimited:
                raise
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                # The create may have gone through with its answer lost: look before
                # creating again, so that a retry never leaves two sticky comments.
                existing = self._find_comment(pr_number, marker)
                if existing is None:
                    logger.warning("pull request #%d: %s; creating again", pr_number, exc)
                    return self._create_comment(pr_number, text)
        comment_id, url, current = existing
        if current == text:
            logger.info("pull request #%d: plan comment unchanged (%s)", pr_number, url)
            return StickyComment(comment_id, url, "unchanged")
        response = self._call(
            "PATCH",
            f"/repos/{self.repository}/issues/comments/{comment_id}",
            "update comment",
            json={"body": text},
        )
        updated = self._comment(self._json(response, "update comment"), "update comment")
        logger.info("pull request #%d: plan comment updated (%s)", pr_number, updated[1])
        return StickyComment(updated[0], updated[1], "updated")

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> str:
        response = self._call(
            "POST",
            f"/repos/{self.repository}/pulls",
            "open pull request",
            json={"head": head, "base": base, "title": title, "body": body},
            idempotent=False,
        )
        data = self._json(response, "open pull request")
        if not isinstance(data, dict) or not isinstance(data.get("html_url"), str):
            raise ProviderError(PROVIDER, "open pull request", "answer has no html_url")
        logger.info("opened pull request %s (%s -> %s)", data["html_url"], head, base)
        return str(data["html_url"])

    # --- plumbing -------------------------------------------------------------------

    def _create_comment(self, pr_number: int, text: str) -> StickyComment:
        response = self._call(
            "POST",
            f"/repos/{self.repository}/issues/{pr_number}/comments",
            "create comment",
            json={"body": text},
            idempotent=False,
        )
        comment_id, url = self._comment(self._json(response, "create comment"), "create comment")
        logger.info("pull request #%d: plan comment created (%s)", pr_number, url)
        return StickyComment(comment_id, url, "created")

    def _find_comment(self, pr_number: int, marker: str) -> tuple[int, str, str] | None:
        """The oldest comment whose body starts with the marker, over every page."""
        url: str | None = f"/repos/{self.repository}/issues/{pr_number}/comments"
        params: dict[str, str] | None = {"per_page": str(PER_PAGE)}
        pages = 0
        while url is not None:
            response = self._call("GET", url, "list comments", params=params)
            pages += 1
            items = self._json(response, "list comments")
            if not isinstance(items, list):
                raise ProviderError(PROVIDER, "list comments", "answer is not a list")
            for item in items:
                if isinstance(item, dict) and str(item.get("body") or "").startswith(marker):
                    comment_id, html_url = self._comment(item, "list comments")
                    return comment_id, html_url, str(item["body"])
            url, params = self._next_page(response), None
        logger.debug("pull request #%d: no plan comment in %d page(s)", pr_number, pages)
        return None

    def _next_page(self, response: httpx.Response) -> str | None:
        match = _NEXT.search(response.headers.get("Link", ""))
        if match is None:
            return None
        nxt = match.group(1)
        # The token goes only where it was configured to go, whatever a header says.
        if not nxt.startswith(self.api_url + "/"):
            raise ProviderError(PROVIDER, "list comments", "next page is on another host")
        return nxt[len(self.api_url) :]

    def _comment(self, item: Any, operation: str) -> tuple[int, str]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), int):
            raise ProviderError(PROVIDER, operation, "unexpected comment shape")
        return int(item["id"]), str(item.get("html_url", ""))

    def _redact(self, text: str, secrets: Iterable[str] = ()) -> str:
        for secret in (self._token, *secrets):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        request = self._client.build_request(method, path, json=json, params=params)

        def on_retry(attempt: int, reason: str, pause: float) -> None:
            logger.warning(
                "github %s %s: %s, retry %d in %.1fs",
                operation,
                self.repository,
                reason,
                attempt,
                pause,
            )

        try:
            response = self.retry.send(
                self._client, request, on_retry=on_retry, idempotent=idempotent
            )
        except httpx.HTTPError as exc:
            raise ProviderError(
                PROVIDER,
                operation,
                self._redact(f"{type(exc).__name__}: {exc}"),
                retryable=True,
            ) from None
        status = response.status_code
        if status < 400:
            return response
        message = self._redact(_upstream_message(response))
        # Primary and secondary rate limits: 429, or 403 with no requests left / a Retry-After
        # ("Rate limits for the REST API", GitHub docs).
        limited = status == 429 or (
            status == 403
            and (
                response.headers.get("x-ratelimit-remaining") == "0"
                or "retry-after" in response.headers
            )
        )
        if limited:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimited(
                PROVIDER,
                operation,
                f"rate limited (HTTP {status}): {message}",
                retryable=True,
                retry_after=retry_after,
                status_code=status,
            )
        hint = {
            401: f"; check {TOKEN_ENV}",
            403: "; the workflow needs `permissions: pull-requests: write`",
            404: f"; is {REPOSITORY_ENV}={self.repository} right, and can the token see it?",
        }.get(status, "")
        raise ProviderError(
            PROVIDER,
            operation,
            f"HTTP {status}: {message}{hint}",
            retryable=status >= 500,
            status_code=status,
        )

    def _json(self, response: httpx.Response, operation: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ProviderError(
                PROVIDER, operation, f"HTTP {response.status_code}: answer is not JSON"
            ) from None


def _conforms(client: GitHubClient) -> PullRequestHost:
    return client  # mypy checks here that the adapter implements the Protocol


def _with_marker(marker: str, body: str) -> str:
    text = f"{marker}\n{body}"
    if len(text) <= COMMENT_MAX:
        return text
    return text[: COMMENT_MAX - len(_TRUNCATED)] + _TRUNCATED


def _upstream_message(response: httpx.Response) -> str:
    """GitHub's `message`, with the validation errors' messages or codes after it."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:300]
    message = str(body.get("message") or response.reason_phrase)
    details = []
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            text = error.get("message") or " ".join(
                str(error[k]) for k in ("resource", "field", "code") if error.get(k)
            )
            details.append(str(text))
        elif isinstance(error, str):
            details.append(error)
    return f"{message}: {'; '.join(details)}" if details else message
