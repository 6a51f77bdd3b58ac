"""The Supabase adapter: the subset of the Management API v1 that democtl uses, over httpx.

Owns `SupabaseManagementClient`, which implements `SupabaseProvider`, and the
conversion of the API's answers into `Project`/`ApiKeys` values and its errors into
`ProviderError`, `RateLimited` and `NotReady`. Ownership is the project name and the
organisation: only projects of the configured organisation named
`<prefix><owner id>.<demo id>` (reconciler/marks.py) are listed or touched. `GET
/v1/projects` lists every project the token sees in every organisation, each with its
`organization_slug` (V1ProjectWithDatabaseResponse, required), so the listing is
filtered by slug here; a same-prefix project of another organisation or another owner
id is foreign. Retries live in
`providers.http.RetryPolicy`, nowhere else. The access token and database passwords
never appear in a log line or an exception message.

May import: httpx, `reconciler.marks`, `reconciler.providers.base`,
`reconciler.providers.http`, and the settings model (for `from_environment`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from reconciler.marks import Owner, is_pool_id
from reconciler.providers.base import (
    ApiKeys,
    NotReady,
    Organization,
    Project,
    ProviderError,
    RateLimited,
    SupabasePreflight,
    SupabaseProvider,
)
from reconciler.providers.budget import BudgetSpent, RequestBudget, parse_retry_after
from reconciler.providers.http import (
    OPERATION,
    Network,
    RequestObserver,
    RetryPolicy,
    make_client,
    retry_status,
)

if TYPE_CHECKING:
    from reconciler.model import Settings

logger = logging.getLogger(__name__)

PROVIDER = "supabase"
TOKEN_ENV = "SUPABASE_ACCESS_TOKEN"  # noqa: S105 (the variable name, not a token)
HEALTH_SERVICES = ("db", "rest", "auth")
# The documented quota of each bucket: 120 requests a minute per user, per project or
# organisation, per endpoint (supabase/supabase apps/docs/content/_partials/
# api_rate_limits.mdx, https://supabase.com/docs/reference/api/introduction).
RATE_LIMIT = 120
RATE_WINDOW = 60.0
LISTING_FRESH = 30.0  # seconds a listing's statuses stand in for one GET per project
_DEMO_ID = re.compile(r"^demo-[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_REF = re.compile(r"^[a-z]{20}$")
_MASK = "\u00b7"  # the API shows unrevealed secret keys with middle dots


class SupabaseManagementClient:
    """`SupabaseProvider` against https://api.supabase.com (or an emulator at `base_url`)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        organization_slug: str,
        region: str,
        prefix: str,
        *,
        retry: RetryPolicy,
        timeout: float = 30.0,
        instance_size: str | None = None,
        project_url_template: str = "https://{ref}.supabase.co",
        health_services: Iterable[str] = HEALTH_SERVICES,
        network: Network | None = None,
        owner: Owner | None = None,
        budget: RequestBudget | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        if not token:
            raise ProviderError(PROVIDER, "configure", f"{TOKEN_ENV} is empty")
        self.base_url = base_url.rstrip("/")
        self.organization_slug = organization_slug
        self.region = region
        self.prefix = prefix
        self.owner = owner or Owner()
        self.retry = retry
        self.instance_size = instance_size
        self.project_url_template = project_url_template
        self.health_services = tuple(health_services)
        self._token = token
        # One budget per token: the API counts per user, scope and endpoint.
        self.budget = budget or RequestBudget(limit=RATE_LIMIT, window=RATE_WINDOW)
        self._client = make_client(
            self.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            network=network,  # proxies and CAs of the environment, unless given
            observer=observer,
            provider=PROVIDER,
        )
        self._observer = observer
        # ref -> demo id of every managed project seen, so errors can name the demo
        self._owned: dict[str, str] = {}
        # the last listing's statuses and when it was taken (the budget's clock)
        self._listed: dict[str, str] = {}
        self._listed_at = float("-inf")

    def __repr__(self) -> str:
        return f"SupabaseManagementClient(base_url={self.base_url!r}, prefix={self.prefix!r})"

    @classmethod
    def from_environment(
        cls,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        project_url_template: str = "https://{ref}.supabase.co",
        observer: RequestObserver | None = None,
    ) -> SupabaseManagementClient:
        """Build the client from settings and SUPABASE_ACCESS_TOKEN (the CLI edge calls this)."""
        env = os.environ if environ is None else environ
        token = env.get(TOKEN_ENV, "")
        if not token:
            raise ProviderError(
                PROVIDER, "configure", f"{TOKEN_ENV} is not set; create a token in the dashboard"
            )
        sb = settings.supabase
        return cls(
            base_url or sb.apiUrl,
            token,
            sb.organization,
            sb.region,
            sb.projectPrefix,
            retry=retry or RetryPolicy(),
            timeout=timeout,
            instance_size=sb.size,
            project_url_template=project_url_template,
            owner=settings.owner,
            observer=observer,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SupabaseManagementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ownership ------------------------------------------------------------------

    def project_name(self, demo_id: str) -> str:
        return self.owner.project_name(self.prefix, demo_id)

    def demo_id_of(self, name: str) -> str | None:
        """The demo id in a project name this installation owns; None for any other name."""
        return self.owner.project_demo(self.prefix, name)

    def project_url(self, ref: str) -> str:
        return self.project_url_template.format(ref=ref)

    # --- the Protocol ---------------------------------------------------------------

    def list_projects(self) -> list[Project]:
        response = self._call("GET", "/v1/projects", "list projects")
        projects = []
        for item in self._json(response, "list projects", None):
            project = self._project(item)
            if project is not None:
                projects.append(project)
        self._listed = {p.ref: p.status for p in projects}
        self._listed_at = self.budget.clock()
        return sorted(projects, key=lambda p: (p.demo_id, p.ref))

    def create_project(self, demo_id: str, db_pass: str) -> Project:
        if not _DEMO_ID.match(demo_id) and not is_pool_id(demo_id):
            raise ProviderError(PROVIDER, "create project", "invalid demo id", demo_id=demo_id)
        body: dict[str, Any] = {
            "name": self.project_name(demo_id),
            "db_pass": db_pass,
            "organization_slug": self.organization_slug,
            "region_selection": {"type": "specific", "code": self.region},
        }
        if self.instance_size:
            body["desired_instance_size"] = self.instance_size
        logger.info("%s: creating Supabase project %s", demo_id, body["name"])
        try:
            response = self._call(
                "POST",
                "/v1/projects",
                "create project",
                demo_id,
                json=body,
                secrets=(db_pass,),
                idempotent=False,
            )
        except RateLimited:
            raise
        except ProviderError as exc:
            if not exc.retryable:
                raise
            # The create may have happened with its answer lost: adopt it, never repeat it.
            adopted = [
                p for p in self.list_projects() if p.name == body["name"] and not p.going_down
            ]
            if len(adopted) == 1:
                logger.warning(
                    "%s: create answered %s, adopted %s found by name",
                    demo_id,
                    exc.upstream_message,
                    adopted[0].ref,
                )
                return adopted[0]
            raise
        project = self._project(self._json(response, "create project", demo_id))
        if project is None:
            raise ProviderError(
                PROVIDER,
                "create project",
                "the created project is not named as asked",
                demo_id=demo_id,
            )
        logger.info("%s: created Supabase project %s (%s)", demo_id, project.ref, project.status)
        return project

    def get_project(self, ref: str) -> Project | None:
        """The managed project, or None when it is gone or is not ours (foreign = invisible)."""
        self._check_ref(ref, "get project")
        demo_id = self._owned.get(ref)  # known once listed or created: it names the log lines
        response = self._call("GET", f"/v1/projects/{ref}", "get project", demo_id, accept={404})
        if response.status_code == 404:
            self._owned.pop(ref, None)
            return None
        return self._project(self._json(response, "get project", demo_id))

    def is_healthy(self, ref: str) -> bool:
        """The project's status, then its services. A listing of this cycle (younger than
        LISTING_FRESH seconds) already gave the status: no `GET /v1/projects/{ref}` then."""
        listed = self._listed.get(ref)
        if listed is not None and self.budget.clock() - self._listed_at < LISTING_FRESH:
            if listed != "ACTIVE_HEALTHY":
                return False
        else:
            project = self.get_project(ref)
            if project is None or not project.healthy:
                return False
        demo_id = self._owned.get(ref)
        response = self._call(
            "GET",
            f"/v1/projects/{ref}/health",
            "health",
            demo_id,
            # an array query parameter in the spec's default style: services=db&services=rest
            params=httpx.QueryParams([("services", name) for name in self.health_services]),
        )
        services = self._json(response, "health", demo_id)
        statuses = {s.get("name"): s.get("status") for s in services if isinstance(s, dict)}
        healthy = all(statuses.get(name) == "ACTIVE_HEALTHY" for name in self.health_services)
        if not healthy:
            logger.info(
                "%s: Supabase project %s services not healthy yet: %s", demo_id, ref, statuses
            )
        return healthy

    def run_sql(self, ref: str, query: str) -> list[dict[str, object]]:
        demo_id = self._require_owned(ref, "run sql")
        response = self._call(
            "POST", f"/v1/projects/{ref}/database/query", "run sql", demo_id, json={"query": query}
        )
        rows = self._json(response, "run sql", demo_id)
        if rows is None:
            return []
        if not isinstance(rows, list):
            raise ProviderError(
                PROVIDER, "run sql", "answer is not a list of rows", demo_id=demo_id
            )
        return [dict(row) for row in rows]

    def api_keys(self, ref: str) -> ApiKeys:
        demo_id = self._require_owned(ref, "api keys")
        response = self._call(
            "GET",
            f"/v1/projects/{ref}/api-keys",
            "api keys",
            demo_id,
            params=httpx.QueryParams({"reveal": "true"}),
        )
        keys = self._json(response, "api keys", demo_id)
        anon = _pick_key(keys, new_type="publishable", legacy_name="anon")
        service = _pick_key(keys, new_type="secret", legacy_name="service_role")
        if not anon or not service:
            raise ProviderError(
                PROVIDER,
                "api keys",
                "the project has no anon and service-role keys",
                demo_id=demo_id,
            )
        return ApiKeys(anon=anon, service_role=service)

    def set_db_password(self, ref: str, password: str) -> None:
        demo_id = self._require_owned(ref, "set db password")
        self._call(
            "PATCH",
            f"/v1/projects/{ref}/database/password",
            "set db password",
            demo_id,
            json={"password": password},
            secrets=(password,),
        )
        logger.info("%s: database password of %s set", demo_id, ref)

    def rename_project(self, ref: str, demo_id: str) -> None:
        # PATCH /v1/projects/{ref} with V1UpdateProjectBody {"name"} (v1-update-a-project in
        # the Management API spec): a pool member claimed, or marked migrated, keeps its ref
        was = self._require_owned(ref, "rename project")
        if not _DEMO_ID.match(demo_id) and not is_pool_id(demo_id):
            raise ProviderError(PROVIDER, "rename project", "invalid demo id", demo_id=demo_id)
        name = self.project_name(demo_id)
        self._call("PATCH", f"/v1/projects/{ref}", "rename project", was, json={"name": name})
        self._owned[ref] = demo_id
        logger.info("%s: Supabase project %s renamed %s (was %s)", demo_id, ref, name, was)

    def delete_project(self, ref: str) -> None:
        self._check_ref(ref, "delete project")
        # Read first, always: ownership is checked on fresh data, never on a cache.
        response = self._call(
            "GET", f"/v1/projects/{ref}", "delete project", self._owned.get(ref), accept={404}
        )
        if response.status_code == 404:
            logger.info("%s: Supabase project %s already gone", self._owned.pop(ref, "-"), ref)
            return
        project = self._project(self._json(response, "delete project", None))
        if project is None:
            raise ProviderError(
                PROVIDER,
                "delete project",
                f"project {ref} is not managed by democtl for this installation "
                f"(organisation {self.organization_slug}, owner id {self.owner.id}): "
                "not deleted",
            )
        demo_id = project.demo_id
        if project.going_down:
            # Already being deleted: a second DELETE would only be refused as "not ready".
            logger.info("%s: Supabase project %s is already going down", demo_id, ref)
            return
        response = self._call(
            "DELETE", f"/v1/projects/{ref}", "delete project", demo_id, accept={400, 404}
        )
        if response.status_code == 400:
            message = _upstream_message(response)
            if "not ready" in message.lower():
                raise NotReady(
                    PROVIDER,
                    "delete project",
                    f"{message} (status {project.status}); retry later",
                    demo_id=demo_id,
                    retryable=True,
                    status_code=400,
                )
            raise ProviderError(
                PROVIDER, "delete project", f"HTTP 400: {message}", demo_id=demo_id, status_code=400
            )
        self._owned.pop(ref, None)
        if response.status_code == 404:
            logger.info("%s: Supabase project %s already gone", demo_id, ref)
        else:
            logger.info("%s: deleted Supabase project %s", demo_id, ref)

    # --- SupabasePreflight (democtl doctor): reads only -----------------------------

    def organizations(self) -> list[Organization]:
        response = self._call("GET", "/v1/organizations", "list organizations")
        items = self._json(response, "list organizations", None)
        if not isinstance(items, list):
            raise ProviderError(PROVIDER, "list organizations", "answer is not a list")
        return sorted(
            (Organization(str(o.get("slug", "")), str(o.get("name", ""))) for o in items),
            key=lambda o: o.slug,
        )

    def organization(self, slug: str) -> Organization:
        # V1OrganizationSlugResponse carries the plan (free, pro, team, enterprise, platform)
        body = self._json(
            self._call("GET", f"/v1/organizations/{slug}", "get organization"),
            "get organization",
            None,
        )
        if not isinstance(body, dict):
            raise ProviderError(PROVIDER, "get organization", "answer is not an object")
        plan = body.get("plan")
        return Organization(slug, str(body.get("name", "")), str(plan) if plan else None)

    def organization_project_count(self, slug: str) -> int:
        # OrganizationProjectsResponse.pagination.count is the total: one project per page
        # is enough to read it
        response = self._call(
            "GET",
            f"/v1/organizations/{slug}/projects",
            "count projects",
            params=httpx.QueryParams({"limit": "1"}),
        )
        body = self._json(response, "count projects", None)
        count = body.get("pagination", {}).get("count") if isinstance(body, dict) else None
        if not isinstance(count, int | float):
            raise ProviderError(PROVIDER, "count projects", "answer has no pagination.count")
        return int(count)

    # --- plumbing -------------------------------------------------------------------

    def _check_ref(self, ref: str, operation: str) -> None:
        if not _REF.match(ref):
            raise ProviderError(PROVIDER, operation, f"{ref!r} is not a project ref")

    def _require_owned(self, ref: str, operation: str) -> str:
        self._check_ref(ref, operation)
        if ref not in self._owned:
            project = self.get_project(ref)
            if project is None:
                raise ProviderError(
                    PROVIDER, operation, f"project {ref} is gone or not managed by democtl"
                )
        return self._owned[ref]

    def _project(self, item: Any) -> Project | None:
        if not isinstance(item, dict):
            raise ProviderError(PROVIDER, "parse project", "unexpected answer shape")
        # A token may see several organisations' projects (GET /v1/projects lists them all;
        # `organization_slug` is required in V1ProjectWithDatabaseResponse): only the
        # configured one's are ours, whatever their name, or another organisation's
        # `democtl-demo-x` would be adopted, and deleted when demo-x expires.
        if item.get("organization_slug") != self.organization_slug:
            return None
        demo_id = self.demo_id_of(str(item.get("name", "")))
        if demo_id is None:
            return None
        # `organization_slug` is required in every project answer; one without it, or of
        # another organisation, is not ours whatever its name.
        if item.get("organization_slug") != self.organization_slug:
            return None
        ref = str(item["ref"])
        self._owned[ref] = demo_id
        return Project(
            ref=ref,
            name=str(item["name"]),
            status=str(item.get("status", "UNKNOWN")),
            demo_id=demo_id,
            region=str(item.get("region", "")),
            created_at=_parse_time(item.get("created_at")),
        )

    def _redact(self, text: str, secrets: Iterable[str]) -> str:
        for secret in (self._token, *secrets):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        demo_id: str | None = None,
        *,
        json: Any = None,
        params: httpx.QueryParams | None = None,
        idempotent: bool = True,
        accept: frozenset[int] | set[int] = frozenset(),
        secrets: Iterable[str] = (),
    ) -> httpx.Response:
        secrets = tuple(secrets)
        request = self._client.build_request(
            method, path, json=json, params=params, extensions={OPERATION: operation}
        )
        key = bucket_of(method, path, json)

        def on_retry(attempt: int, reason: str, pause: float) -> None:
            if self._observer is not None:
                self._observer.retried(PROVIDER, operation, retry_status(reason), pause)
            logger.warning(
                "%s: supabase %s: %s, retry %d in %.1fs",
                demo_id or "-",
                operation,
                reason,
                attempt,
                pause,
            )

        try:
            response = self.retry.send(
                self._client,
                request,
                on_retry=on_retry,
                idempotent=idempotent,
                take=lambda: self.budget.take(key),
                observe=lambda r: self.budget.observe_headers(key, r.headers, r.status_code),
            )
        except BudgetSpent as spent:
            # Not sent: the bucket would refuse it. The demo waits for a later cycle.
            logger.info(
                "%s: supabase %s deferred for %.0fs: %s",
                demo_id or "-",
                operation,
                spent.wait,
                spent,
            )
            raise RateLimited(
                PROVIDER,
                operation,
                f"deferred, not sent: {spent}",
                demo_id=demo_id,
                retryable=True,
                retry_after=spent.wait,
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                PROVIDER,
                operation,
                self._redact(f"{type(exc).__name__}: {exc}", secrets),
                demo_id=demo_id,
                retryable=True,
            ) from None
        status = response.status_code
        if status < 400 or status in accept:
            return response
        message = self._redact(_upstream_message(response), secrets)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is None:
                retry_after = parse_retry_after(response.headers.get("X-RateLimit-Reset"))
            raise RateLimited(
                PROVIDER,
                operation,
                f"rate limited (HTTP 429): {message}",
                demo_id=demo_id,
                retryable=True,
                retry_after=retry_after,
                status_code=status,
            )
        raise ProviderError(
            PROVIDER,
            operation,
            f"HTTP {status}: {message}",
            demo_id=demo_id,
            retryable=status >= 500,
            status_code=status,
        )

    def _json(self, response: httpx.Response, operation: str, demo_id: str | None) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ProviderError(
                PROVIDER,
                operation,
                f"HTTP {response.status_code}: answer is not JSON",
                demo_id=demo_id,
            ) from None


def bucket_of(method: str, path: str, body: Any = None) -> tuple[str, str]:
    """The (scope, endpoint) a request counts against, as the API counts it: the project
    in the path, else the organisation (`POST /v1/projects`: the body's), else the user."""
    parts = path.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[1:3] == ["v1", "projects"]:
        endpoint = "/".join(["", "v1", "projects", "{ref}", *parts[4:]])
        return f"project:{parts[3]}", f"{method} {endpoint}"
    if len(parts) >= 4 and parts[1:3] == ["v1", "organizations"]:
        endpoint = "/".join(["", "v1", "organizations", "{slug}", *parts[4:]])
        return f"organization:{parts[3]}", f"{method} {endpoint}"
    if method == "POST" and path == "/v1/projects" and isinstance(body, dict):
        return f"organization:{body.get('organization_slug')}", f"{method} {path}"
    return "user", f"{method} {'/'.join(parts)}"


def _conforms(client: SupabaseManagementClient) -> SupabaseProvider:
    return client  # mypy checks here that the adapter implements the Protocol


def _conforms_preflight(client: SupabaseManagementClient) -> SupabasePreflight:
    return client


def _upstream_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error", "msg"):
            if isinstance(body.get(key), str):
                return str(body[key]).strip()
    return str(body)[:300]


def _pick_key(keys: Any, *, new_type: str, legacy_name: str) -> str | None:
    """Prefer the new publishable/secret keys, fall back to the legacy JWTs."""
    if not isinstance(keys, list):
        return None
    by_type = [k for k in keys if isinstance(k, dict) and k.get("type") == new_type]
    legacy = [k for k in keys if isinstance(k, dict) and k.get("name") == legacy_name]
    for key in (*by_type, *legacy):
        value = key.get("api_key")
        if isinstance(value, str) and value and _MASK not in value:
            return value
    return None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
