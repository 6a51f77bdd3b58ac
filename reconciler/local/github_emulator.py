"""A GitHub REST API emulator on loopback: the subset democtl's GitHub client uses.

Owns the emulated repositories (in memory: branches, pull requests, issue
comments) and the HTTP API of `X-GitHub-Api-Version: 2022-11-28` for
`GET /repos/{owner}/{repo}`, the issue comments list (`per_page`/`page`, a
`Link` header), create and update (`PATCH .../issues/comments/{comment_id}`),
and pull request create. It is as strict as GitHub where a client can go wrong:
401 without `Authorization: Bearer`/`token`, 404 for an unknown repository,
issue or comment, 422 with GitHub's validation bodies for a pull request whose
head equals its base or that already exists, and for a missing or too long
body; 400 for an API version GitHub does not serve. The contract is
tests/contracts/specs/github-rest.subset.json; faults (429 with Retry-After,
5xx, drops) come from the shared server.

May import: the standard library and `reconciler.local.server`. Never stores or
logs a token: a request is recorded with its auth scheme only.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from reconciler.local.server import EmulatorServer, Faults, Request, Response, ServedEmulator

API_VERSION = "2022-11-28"
# GitHub serves these; an unknown one is a 400 ("About the REST API" > API versions).
SUPPORTED_VERSIONS = ("2022-11-28", "2026-03-10")
BOT_LOGIN = "github-actions[bot]"
PER_PAGE_DEFAULT = 30  # docs: "per_page ... Default: 30", maximum 100
PER_PAGE_MAX = 100
COMMENT_MAX = 65536  # GitHub rejects longer bodies: "body is too long (maximum is 65536 ...)"
DOCS = "https://docs.github.com/rest"
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(_REPO), "GET /repos/{owner}/{repo}"),
    (
        "GET",
        re.compile(_REPO + r"/issues/(?P<number>[^/]+)/comments"),
        "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "POST",
        re.compile(_REPO + r"/issues/(?P<number>[^/]+)/comments"),
        "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "PATCH",
        re.compile(_REPO + r"/issues/comments/(?P<comment>[^/]+)"),
        "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}",
    ),
    ("POST", re.compile(_REPO + r"/pulls"), "POST /repos/{owner}/{repo}/pulls"),
)


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def error_body(status: int, message: str, doc: str = DOCS) -> dict[str, Any]:
    """GitHub's `basic-error` shape, as it answers (its `status` is a string)."""
    return {"message": message, "documentation_url": doc, "status": str(status)}


def _validation_failed(doc: str, *errors: dict[str, Any]) -> ApiError:
    # The `validation-error` body GitHub answers with 422, e.g. for an existing pull
    # request: {"message": "Validation Failed", "errors": [{"resource": "PullRequest",
    # "code": "custom", "message": "A pull request already exists for o:b."}], ...}
    return ApiError(
        422,
        {
            "message": "Validation Failed",
            "errors": list(errors),
            "documentation_url": doc,
            "status": "422",
        },
    )


def _route_of(request: Request) -> str:
    for method, pattern, route in _ROUTES:
        if request.method == method and pattern.fullmatch(request.path):
            return route
    return f"{request.method} {request.path}"


def _auth(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(scheme, token) from `Authorization: Bearer X` or `token X`; None when absent."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() in {"bearer", "token"} and token.strip():
        return scheme.lower(), token.strip()
    return None


def _node_id(kind: str, number: int) -> str:
    return kind + "_" + hashlib.sha256(f"{kind}/{number}".encode()).hexdigest()[:16]


@dataclass
class _Repository:
    id: int
    owner: str
    name: str
    default_branch: str
    branches: set[str]
    private: bool = True
    # where the branches really are (a git remote's), when the test gives one
    branch_source: Callable[[], set[str]] | None = None
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # pull requests too
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def has_branch(self, name: str) -> bool:
        if name in self.branches:
            return True
        return self.branch_source is not None and name in self.branch_source()


class GitHubEmulator(ServedEmulator):
    """Repositories behind GitHub's REST API, on an `EmulatorServer`.

    `tokens` maps each accepted token to the login it acts as; without it any
    token is accepted and acts as `github-actions[bot]`, as `GITHUB_TOKEN` does.
    """

    def __init__(
        self,
        repositories: tuple[str, ...] = ("splits-network/demos",),
        *,
        tokens: Mapping[str, str] | None = None,
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
        port: int = 0,
    ) -> None:
        self._tokens = dict(tokens) if tokens is not None else None
        self._clock = clock
        self._lock = threading.RLock()
        self._sequence = 0
        self._repos: dict[str, _Repository] = {}
        for full_name in repositories:
            self.add_repository(full_name)
        # Recorded calls (method, route, query, body, auth scheme), for contract tests.
        self.calls: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.server = EmulatorServer(
            "github",
            self.handle,
            faults=faults,
            error_body=error_body,
            route_of=_route_of,
            port=port,
        )

    # --- fixtures ---------------------------------------------------------------------

    def add_repository(self, full_name: str, *, default_branch: str = "main") -> None:
        owner, _, name = full_name.partition("/")
        with self._lock:
            self._repos[full_name.lower()] = _Repository(
                id=len(self._repos) + 1,
                owner=owner,
                name=name,
                default_branch=default_branch,
                branches={default_branch},
            )

    def add_branch(self, full_name: str, branch: str) -> None:
        with self._lock:
            self._repo(full_name).branches.add(branch)

    def track_branches(self, full_name: str, source: Callable[[], set[str]]) -> None:
        """Take the repository's branches from `source` too (the bare repository pushes go to),
        so a pull request's head exists only once it was really pushed."""
        with self._lock:
            self._repo(full_name).branch_source = source

    def open_pull_request(
        self, full_name: str, head: str, base: str = "main", *, user: str = "alice"
    ) -> int:
        """A pull request opened by a person (the number the workflow's event names)."""
        with self._lock:
            repo = self._repo(full_name)
            repo.branches.add(head)
            return int(
                self._create_pull(repo, {"head": head, "base": base, "title": head}, user)["number"]
            )

    def add_comment(self, full_name: str, number: int, body: str, *, user: str = "alice") -> int:
        """A comment written directly (a person's, another bot's), with the API's rules."""
        with self._lock:
            repo = self._repo(full_name)
            return int(self._create_comment(repo, number, {"body": body}, user)["id"])

    def comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """Every comment on an issue or pull request, oldest first."""
        with self._lock:
            repo = self._repo(full_name)
            return [
                copy.deepcopy(c) for _, c in sorted(repo.comments.items()) if c["number"] == number
            ]

    def pull_requests(self, full_name: str) -> list[dict[str, Any]]:
        with self._lock:
            repo = self._repo(full_name)
            return [copy.deepcopy(i) for _, i in sorted(repo.issues.items()) if "head" in i]

    def _repo(self, full_name: str) -> _Repository:
        repo = self._repos.get(full_name.lower())
        if repo is None:
            raise KeyError(full_name)
        return repo

    # --- HTTP -------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        route = _route_of(request)
        auth = _auth(request.headers)
        self.calls.append(
            {
                "method": request.method,
                "path": request.path,
                "route": route,
                "query": {k: v[0] if len(v) == 1 else v for k, v in request.query.items()},
                "body": request.body,
                "headers": {
                    k: v
                    for k, v in request.headers.items()
                    if k in {"accept", "x-github-api-version"}
                },
                "auth": auth[0] if auth else None,
            }
        )
        try:
            version = request.headers.get("x-github-api-version", API_VERSION)
            if version not in SUPPORTED_VERSIONS:
                raise ApiError(
                    400,
                    error_body(
                        400,
                        f"Unsupported 'X-GitHub-Api-Version' header value {version!r}; "
                        f"supported versions are {', '.join(SUPPORTED_VERSIONS)}",
                        f"{DOCS}/about-the-rest-api/api-versions",
                    ),
                )
            user = self._authenticate(auth)
            with self._lock:
                response = self._dispatch(request, user)
        except ApiError as exc:
            response = Response(exc.status, exc.body)
        response.headers.setdefault("X-GitHub-Api-Version-Selected", API_VERSION)
        response.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return response

    def _authenticate(self, auth: tuple[str, str] | None) -> str:
        if auth is None:
            raise ApiError(401, error_body(401, "Requires authentication"))
        if self._tokens is None:
            return BOT_LOGIN
        login = self._tokens.get(auth[1])
        if login is None:
            raise ApiError(401, error_body(401, "Bad credentials"))
        return login

    def _dispatch(self, request: Request, user: str) -> Response:
        for method, pattern, route in _ROUTES:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if request.method != method:
                continue
            repo = self._repos.get(f"{match['owner']}/{match['repo']}".lower())
            if repo is None:
                raise ApiError(
                    404, error_body(404, "Not Found", f"{DOCS}/repos/repos#get-a-repository")
                )
            if route == "GET /repos/{owner}/{repo}":
                return Response(200, self._full_repository(repo))
            if route.endswith("/issues/{issue_number}/comments"):
                number = _number(match["number"])
                if request.method == "GET":
                    return self._list_comments(request, repo, number)
                return Response(201, self._create_comment(repo, number, _object(request), user))
            if route.endswith("/issues/comments/{comment_id}"):
                return Response(
                    200, self._update_comment(repo, _number(match["comment"]), _object(request))
                )
            return Response(201, self._create_pull(repo, _object(request), user))
        raise ApiError(404, error_body(404, "Not Found"))

    # --- comments -----------------------------------------------------------------------

    def _list_comments(self, request: Request, repo: _Repository, number: int) -> Response:
        self._issue(repo, number)
        page = _positive(request.arg("page", "1"), "page")
        per_page = min(
            _positive(request.arg("per_page", str(PER_PAGE_DEFAULT)), "per_page"), PER_PAGE_MAX
        )
        items = [c for _, c in sorted(repo.comments.items()) if c["number"] == number]
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, math.ceil(len(items) / per_page))
        headers = {}
        link = self._link(request.path, request.query, page, per_page, last)
        if link:
            headers["Link"] = link
        return Response(200, [self._public_comment(repo, c) for c in chunk], headers)

    def _link(
        self, path: str, query: dict[str, list[str]], page: int, per_page: int, last: int
    ) -> str:
        # GitHub's pagination header: `<url>; rel="next", <url>; rel="last"` and, past the
        # first page, `rel="prev"`/`rel="first"`; absent when everything fits one page.
        if last == 1 and page == 1:
            return ""

        def url(to: int) -> str:
            params = {k: v[0] for k, v in query.items() if k not in {"page", "per_page"}}
            params.update({"per_page": str(per_page), "page": str(to)})
            return f"{self.server.url}{path}?{urlencode(params)}"

        rels = []
        if page > 1:
            rels += [(min(page - 1, last), "prev"), (1, "first")]
        if page < last:
            rels += [(page + 1, "next"), (last, "last")]
        return ", ".join(f'<{url(to)}>; rel="{rel}"' for to, rel in rels)

    def _create_comment(
        self, repo: _Repository, number: int, body: dict[str, Any], user: str
    ) -> dict[str, Any]:
        self._issue(repo, number)
        text = _comment_body(body, "IssueComment", "issues/comments#create-an-issue-comment")
        now = self._tick()
        comment_id = 1_000_000 + self._sequence
        comment = {
            "id": comment_id,
            "number": number,
            "body": text,
            "user": user,
            "created_at": now,
            "updated_at": now,
        }
        repo.comments[comment_id] = comment
        return self._public_comment(repo, comment)

    def _update_comment(
        self, repo: _Repository, comment_id: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        comment = repo.comments.get(comment_id)
        if comment is None:
            raise ApiError(
                404, error_body(404, "Not Found", f"{DOCS}/issues/comments#update-an-issue-comment")
            )
        comment["body"] = _comment_body(
            body, "IssueComment", "issues/comments#update-an-issue-comment"
        )
        comment["updated_at"] = self._tick()
        return self._public_comment(repo, comment)

    def _issue(self, repo: _Repository, number: int) -> dict[str, Any]:
        issue = repo.issues.get(number)
        if issue is None:
            raise ApiError(404, error_body(404, "Not Found", f"{DOCS}/issues/comments"))
        return issue

    # --- pull requests ----------------------------------------------------------------

    def _create_pull(self, repo: _Repository, body: dict[str, Any], user: str) -> dict[str, Any]:
        doc = f"{DOCS}/pulls/pulls#create-a-pull-request"
        missing = [
            name
            for name in ("head", "base")
            if not isinstance(body.get(name), str) or not body[name]
        ]
        if missing:
            raise _validation_failed(
                doc,
                *(
                    {"resource": "PullRequest", "field": f, "code": "missing_field"}
                    for f in missing
                ),
            )
        if not isinstance(body.get("title"), str) or not body["title"].strip():
            raise _validation_failed(
                doc, {"resource": "Issue", "field": "title", "code": "missing_field"}
            )
        head_owner, _, head = body["head"].rpartition(":")
        base = body["base"]
        if head_owner and head_owner.lower() != repo.owner.lower():
            raise _validation_failed(
                doc, {"resource": "PullRequest", "field": "head", "code": "invalid"}
            )
        if not repo.has_branch(base):
            raise _validation_failed(
                doc, {"resource": "PullRequest", "field": "base", "code": "invalid"}
            )
        if not repo.has_branch(head):
            raise _validation_failed(
                doc, {"resource": "PullRequest", "field": "head", "code": "invalid"}
            )
        if head == base:
            raise _validation_failed(
                doc,
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"No commits between {base} and {head}",
                },
            )
        for issue in repo.issues.values():
            if issue.get("head") == head and issue.get("base") == base and issue["state"] == "open":
                raise _validation_failed(
                    doc,
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {repo.owner}:{head}.",
                    },
                )
        now = self._tick()
        number = len(repo.issues) + 1
        issue = {
            "number": number,
            "title": body["title"],
            "body": body.get("body") if isinstance(body.get("body"), str) else None,
            "head": head,
            "base": base,
            "state": "open",
            "draft": bool(body.get("draft", False)),
            "user": user,
            "created_at": now,
            "updated_at": now,
        }
        repo.issues[number] = issue
        return self._public_pull(repo, issue)

    # --- representations (the spec's required fields, filled as GitHub fills them) --------

    def _api(self, repo: _Repository) -> str:
        return f"{self.server.url}/repos/{repo.full_name}"

    def _html(self, repo: _Repository) -> str:
        return f"https://github.com/{repo.full_name}"

    def _tick(self) -> str:
        # A logical clock by default: deterministic timestamps, one second per write.
        self._sequence += 1
        moment = self._clock() if self._clock else _EPOCH + timedelta(seconds=self._sequence)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def _user(self, login: str) -> dict[str, Any]:
        base = f"{self.server.url}/users/{login}"
        number = int(hashlib.sha256(login.encode()).hexdigest()[:6], 16)
        return {
            "login": login,
            "id": number,
            "node_id": _node_id("U", number),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{number}",
            "gravatar_id": "",
            "url": base,
            "html_url": f"https://github.com/{login}",
            "followers_url": f"{base}/followers",
            "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}",
            "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions",
            "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos",
            "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "site_admin": False,
        }

    def _public_comment(self, repo: _Repository, comment: dict[str, Any]) -> dict[str, Any]:
        api = self._api(repo)
        return {
            "id": comment["id"],
            "node_id": _node_id("IC", comment["id"]),
            "url": f"{api}/issues/comments/{comment['id']}",
            "html_url": f"{self._html(repo)}/pull/{comment['number']}#issuecomment-{comment['id']}",
            "body": comment["body"],
            "user": self._user(comment["user"]),
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
            "issue_url": f"{api}/issues/{comment['number']}",
            "author_association": "NONE" if comment["user"].endswith("[bot]") else "MEMBER",
        }

    def _repository(self, repo: _Repository) -> dict[str, Any]:
        api = self._api(repo)
        urls = {
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{api}/assignees{{/user}}",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "comments_url": f"{api}/comments{{/number}}",
            "commits_url": f"{api}/commits{{/sha}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "contributors_url": f"{api}/contributors",
            "deployments_url": f"{api}/deployments",
            "downloads_url": f"{api}/downloads",
            "events_url": f"{api}/events",
            "forks_url": f"{api}/forks",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "hooks_url": f"{api}/hooks",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "issues_url": f"{api}/issues{{/number}}",
            "keys_url": f"{api}/keys{{/key_id}}",
            "labels_url": f"{api}/labels{{/name}}",
            "languages_url": f"{api}/languages",
            "merges_url": f"{api}/merges",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "releases_url": f"{api}/releases{{/id}}",
            "stargazers_url": f"{api}/stargazers",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "tags_url": f"{api}/tags",
            "teams_url": f"{api}/teams",
            "trees_url": f"{api}/git/trees{{/sha}}",
        }
        open_issues = sum(1 for i in repo.issues.values() if i["state"] == "open")
        return {
            "id": repo.id,
            "node_id": _node_id("R", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self._user(repo.owner),
            "private": repo.private,
            "html_url": self._html(repo),
            "description": None,
            "fork": False,
            "url": api,
            **urls,
            "git_url": f"git://github.com/{repo.full_name}.git",
            "ssh_url": f"git@github.com:{repo.full_name}.git",
            "clone_url": f"{self._html(repo)}.git",
            "svn_url": self._html(repo),
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": repo.default_branch,
            "open_issues": open_issues,
            "open_issues_count": open_issues,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "archived": False,
            "disabled": False,
            "license": None,
            "pushed_at": _EPOCH.isoformat().replace("+00:00", "Z"),
            "created_at": _EPOCH.isoformat().replace("+00:00", "Z"),
            "updated_at": _EPOCH.isoformat().replace("+00:00", "Z"),
        }

    def _full_repository(self, repo: _Repository) -> dict[str, Any]:
        return {
            **self._repository(repo),
            "has_discussions": False,
            "network_count": 0,
            "subscribers_count": 0,
        }

    def _public_pull(self, repo: _Repository, issue: dict[str, Any]) -> dict[str, Any]:
        api = self._api(repo)
        number = issue["number"]
        pull_api = f"{api}/pulls/{number}"
        html = f"{self._html(repo)}/pull/{number}"
        sha = hashlib.sha1(f"{repo.full_name}/{issue['head']}".encode()).hexdigest()  # noqa: S324

        def end(ref: str) -> dict[str, Any]:
            return {
                "label": f"{repo.owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self._user(repo.owner),
                "repo": self._repository(repo),
            }

        links = {
            "self": pull_api,
            "html": html,
            "issue": f"{api}/issues/{number}",
            "comments": f"{api}/issues/{number}/comments",
            "review_comments": f"{pull_api}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{pull_api}/commits",
            "statuses": f"{api}/statuses/{sha}",
        }
        comments = sum(1 for c in repo.comments.values() if c["number"] == number)
        return {
            "url": pull_api,
            "id": 5_000_000 + number,
            "node_id": _node_id("PR", number),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": number,
            "state": issue["state"],
            "locked": False,
            "title": issue["title"],
            "user": self._user(issue["user"]),
            "body": issue["body"],
            "labels": [],
            "milestone": None,
            "draft": issue["draft"],
            "created_at": issue["created_at"],
            "updated_at": issue["updated_at"],
            "closed_at": None,
            "merged_at": None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "head": end(issue["head"]),
            "base": end(issue["base"]),
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": "NONE" if issue["user"].endswith("[bot]") else "MEMBER",
            "auto_merge": None,
            "merged": False,
            "mergeable": None,
            "mergeable_state": "unknown",
            "merged_by": None,
            "comments": comments,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 0,
            "deletions": 0,
            "changed_files": 0,
        }


def _number(text: str) -> int:
    if not text.isdigit():
        raise ApiError(404, error_body(404, "Not Found"))
    return int(text)


def _positive(text: str | None, name: str) -> int:
    # GitHub ignores a page or per_page it cannot read and uses the default; a strict
    # emulator refuses, so a client bug shows instead of paging wrongly.
    if text is None or not text.isdigit() or int(text) < 1:
        raise ApiError(422, error_body(422, f"{name} must be a positive whole number"))
    return int(text)


def _object(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise ApiError(400, error_body(400, "Problems parsing JSON")) from None
    if not isinstance(body, dict):
        raise ApiError(400, error_body(400, "Problems parsing JSON"))
    return body


def _comment_body(body: dict[str, Any], resource: str, doc: str) -> str:
    text = body.get("body")
    if not isinstance(text, str) or not text:
        raise _validation_failed(
            f"{DOCS}/{doc}", {"resource": resource, "field": "body", "code": "missing_field"}
        )
    if len(text) > COMMENT_MAX:
        raise _validation_failed(
            f"{DOCS}/{doc}",
            {
                "resource": resource,
                "field": "body",
                "code": "custom",
                "message": f"body is too long (maximum is {COMMENT_MAX} characters)",
            },
        )
    return text
