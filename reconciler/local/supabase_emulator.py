"""A local Supabase Management API v1 whose projects are real PostgreSQL databases.

Owns the emulated endpoints democtl uses (list/create/get/delete projects, health,
api-keys, database/query, database/password, and for `doctor` the organisations: list,
one with its plan, its projects counted) with the status codes and shapes of
../shared/specs (the OpenAPI spec and the recorded real exchanges), the project
life cycle (UNKNOWN -> COMING_UP -> ACTIVE_HEALTHY by time since creation, read
from an injected clock, and never ACTIVE_HEALTHY before the project's database
exists: the create is answered at once and the database made in the background,
`local.supabase_databases`; INIT_FAILED if it cannot be made; the database takes
queries `database_lag_seconds` after ACTIVE_HEALTHY, answering 500 before; a deleted
project is GOING_DOWN for `going_down_seconds`, then gone), the refusals of the real API (403 for an
organisation the token is not a member of, 400 for values outside the spec's
enums: `local.supabase_spec`), queries run as a non-superuser role (`local.supabase_sql`),
the 120/minute rate limit per user, scope and endpoint with X-RateLimit-* headers
(`local.ratelimit`), and the JSON state file that lets commands share one world.
Faults and request counters come from `local.server.EmulatorServer`.

May import: the standard library, psycopg, and `reconciler.local`'s server, ratelimit,
postgres, supabase_databases, supabase_spec and supabase_sql. Stores no secret: database
passwords are applied to a real role and forgotten; keys derive from the ref and a
per-state salt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import re
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from reconciler.local.postgres import LocalPostgres
from reconciler.local.ratelimit import FixedWindowLimiter
from reconciler.local.server import EmulatorServer, Faults, Request, Response, ServedEmulator
from reconciler.local.supabase_databases import ProjectDatabases
from reconciler.local.supabase_spec import FORBIDDEN, create_body_error, iso, project_keys
from reconciler.local.supabase_sql import (
    QUERY_ROLE,
    apply_password,
    execute,
    prepare,
    table_counts,
)

logger = logging.getLogger(__name__)

STATE_FILE = "supabase.json"
RATE_LIMIT = 120
RATE_WINDOW = 60.0
SERVICES = ("auth", "db", "db_postgres_user", "pooler", "realtime", "rest", "storage", "pg_bouncer")
_REF_PATH = re.compile(r"^/v1/projects/(?P<ref>[^/]+)(?P<rest>/.*)?$")
_ORG_PATH = re.compile(r"^/v1/organizations(?:/(?P<slug>[^/]+)(?P<rest>/.*)?)?$")
ORG_PLANS = ("free", "pro", "team", "enterprise", "platform")  # V1OrganizationSlugResponse
DEFAULT_PLAN = "pro"
_SLUG = re.compile(r"^[\w-]+$")
_REF = re.compile(r"^[a-z]{20}$")
_DB_VERSION = "15.8.1.000"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"message": message}, dict(headers or {}))


class SupabaseEmulator(ServedEmulator):
    """The Management API on loopback; `start()` returns its base URL."""

    def __init__(
        self,
        state_dir: Path,
        postgres: LocalPostgres,
        *,
        clock: Callable[[], float],
        come_up_seconds: float = 2.0,
        organizations: Iterable[str] = (),
        plans: Mapping[str, str] | None = None,
        going_down_seconds: float = 30.0,
        database_lag_seconds: float = 1.0,
        faults: Faults | None = None,
        rate_limit: int = RATE_LIMIT,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        spare_databases: int = 0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = postgres
        self.clock = clock
        self.come_up_seconds = come_up_seconds
        # The organisations the token is a member of; a seeded project's organisation
        # counts too (it exists, since a project lives in it).
        self.organizations = frozenset(organizations)
        # Each organisation's plan (V1OrganizationSlugResponse.plan); unnamed ones are on
        # Pro, so local mode's sample settings may choose a compute size as a paid org can.
        self.plans = dict(plans or {})
        # A deleted project stays listed as GOING_DOWN this long, then is gone.
        self.going_down_seconds = going_down_seconds
        # How long after ACTIVE_HEALTHY the database still refuses connections.
        self.database_lag_seconds = database_lag_seconds
        self.limiter = FixedWindowLimiter(rate_limit, RATE_WINDOW, clock)
        self.refused = 0  # 429s answered for an exceeded bucket (not injected faults)
        self._creating: set[str] = set()  # refs reserved by a create not yet recorded
        self._prepared: set[str] = set()  # databases whose query role is set up
        self._lock = threading.RLock()
        self._state: dict[str, Any] = self._load()
        # blank databases made ahead (`spare_databases`): a create then renames one
        self.databases = ProjectDatabases(
            postgres, salt=str(self._state["salt"]), spares=spare_databases
        )
        self.server = EmulatorServer(
            "supabase", self.handle, faults=faults, route_of=self._route, port=port, tls=tls
        )

    # --- lifecycle ------------------------------------------------------------------

    def project_url(self, ref: str) -> str:
        return f"{self.url}/project/{ref}"

    def start(self) -> str:
        self.databases.start()
        with self._lock:
            # a previous run stopped (or died) before these projects' databases were made:
            # their provisioning goes on, as the real service's would after an API restart
            pending = [
                ref
                for ref, p in self._state["projects"].items()
                if p.get("database_pending") and p.get("deleted") is None
            ]
        for ref in pending:
            self.databases.submit(ref, self._provisioned)
        return super().start()

    def stop(self) -> None:
        super().stop()
        self.databases.stop()

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait for the databases being made (tests moving an injected clock)."""
        return self.databases.settle(timeout)

    # --- state ----------------------------------------------------------------------

    @property
    def _path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load(self) -> dict[str, Any]:
        if self._path.exists():
            state: dict[str, Any] = json.loads(self._path.read_text())
            return state
        salt = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
        return {"version": 1, "next_id": 1, "salt": salt, "projects": {}}

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self._path)

    def add_project(
        self,
        name: str,
        *,
        organization_slug: str = "other-org",
        status: str | None = None,
        created: float | None = None,
    ) -> str:
        """Pre-seed a project (e.g. a foreign one democtl must never touch); returns its ref.

        `created` (epoch seconds) back-dates it, for an orphan older than a grace period.
        """
        with self._lock:
            ref = self._new_ref(name)
            # the database first, the record last: a process killed between leaves at most
            # an unrecorded database, which the next seed of that name (same ref: refs
            # derive from the state) replaces
            self.databases.make(ref)
            project = self._insert(ref, name, organization_slug, "us-east-1")
            if created is not None:
                project["created"] = created
            if status is not None:
                project["forced_status"] = status
            self._save()
        return ref

    def set_status(self, ref: str, status: str | None) -> None:
        """Force a project's status (INIT_FAILED, ...); None returns it to the clock."""
        with self._lock:
            self._state["projects"][ref]["forced_status"] = status
            self._save()

    def _new_ref(self, name: str) -> str:
        # the emulator's own seeded randomness: same state, same refs
        rng = random.Random(f"{self._state['salt']}:{name}:{self._state['next_id']}")
        while True:
            ref = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20))
            if ref not in self._state["projects"] and ref not in self._creating:
                return ref

    def _insert(self, ref: str, name: str, org: str, region: str) -> dict[str, Any]:
        project = {
            "id": self._state["next_id"],
            "ref": ref,
            "name": name,
            "organization_slug": org,
            "region": region,
            "created": self.clock(),
            "forced_status": None,
            "password_changes": 0,
        }
        self._state["next_id"] += 1
        self._state["projects"][ref] = project
        return project

    def status_of(self, project: dict[str, Any]) -> str:
        if project.get("deleted") is not None:
            # A deleted project is GOING_DOWN until it disappears (supabase/supabase
            # PR #40941: "project's status will be swapped to GOING_DOWN when we're
            # deleting the project").
            return "GOING_DOWN"
        if project.get("forced_status"):
            return str(project["forced_status"])
        if project.get("init_failed"):
            # the spec's V1ProjectResponse.status for a project whose provisioning failed;
            # it never becomes ACTIVE_HEALTHY here; it can be deleted
            return "INIT_FAILED"
        age = self.clock() - float(project["created"])
        if age <= 0:
            return "UNKNOWN"
        if age < self.come_up_seconds or project.get("database_pending"):
            return "COMING_UP"
        return "ACTIVE_HEALTHY"

    def _active_since(self, project: dict[str, Any]) -> float:
        """When the project became ACTIVE_HEALTHY: its come-up time, or when its database
        was made if that came later (the clock's reading then)."""
        up = float(project["created"]) + self.come_up_seconds
        made = project.get("database_made")
        return max(up, float(made)) if made is not None else up

    def database_ready(self, project: dict[str, Any]) -> bool:
        """The database accepts connections a moment after the API says ACTIVE_HEALTHY."""
        if project.get("database_pending"):
            return False  # not even a forced status makes a database that is not there
        if project.get("forced_status"):
            return True  # a forced status is a test's statement about the whole project
        return self.clock() >= self._active_since(project) + self.database_lag_seconds

    def _purge(self) -> None:
        """Forget the projects whose GOING_DOWN time is over (their databases went first)."""
        now = self.clock()
        with self._lock:
            gone = [
                ref
                for ref, p in self._state["projects"].items()
                if p.get("deleted") is not None
                and now - float(p["deleted"]) >= self.going_down_seconds
            ]
            for ref in gone:
                del self._state["projects"][ref]
            if gone:
                self._save()

    def _project_body(self, project: dict[str, Any], *, database: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": project["ref"],
            "ref": project["ref"],
            "organization_id": project["organization_slug"],
            "organization_slug": project["organization_slug"],
            "name": project["name"],
            "region": project["region"],
            "status": self.status_of(project),
            "created_at": iso(float(project["created"])),
        }
        if database:
            body["database"] = {
                "host": f"db.{project['ref']}.supabase.red",
                "version": _DB_VERSION,
                "postgres_engine": "15",
                "release_channel": "ga",
            }
        return body

    # --- HTTP -----------------------------------------------------------------------

    @staticmethod
    def _route(request: Request) -> str:
        match = _REF_PATH.match(request.path)
        if match:
            return f"{request.method} /v1/projects/{{ref}}{match.group('rest') or ''}"
        org = _ORG_PATH.match(request.path)
        if org and org.group("slug"):
            return f"{request.method} /v1/organizations/{{slug}}{org.group('rest') or ''}"
        return f"{request.method} {request.path}"

    def scope_of(self, request: Request) -> tuple[str, str, str]:
        """The bucket a request counts against, (user, scope, endpoint), keyed as the docs
        say (supabase/supabase apps/docs/content/_partials/api_rate_limits.mdx): a project
        in the path, else an organisation (`POST /v1/projects`: the body's), else the user."""
        auth = request.headers.get("authorization", "")
        user = "token:" + hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else "ip"
        endpoint = self._route(request)
        match = _REF_PATH.match(request.path)
        if match:
            return user, "project:" + match.group("ref"), endpoint
        org = _ORG_PATH.match(request.path)
        if org and org.group("slug"):  # `GET /v1/organizations` names none: the user's
            return user, "organization:" + org.group("slug"), endpoint
        if request.method == "POST" and request.path == "/v1/projects":
            with contextlib.suppress(ValueError):
                body = request.json()
                if isinstance(body, dict) and isinstance(body.get("organization_slug"), str):
                    return user, "organization:" + body["organization_slug"], endpoint
        return user, "user", endpoint

    def handle(self, request: Request) -> Response:
        verdict = self.limiter.hit(self.scope_of(request))
        headers = {
            "X-RateLimit-Limit": str(verdict.limit),
            "X-RateLimit-Remaining": str(verdict.remaining),
            "X-RateLimit-Reset": str(verdict.reset),
        }
        if not verdict.allowed:
            headers["Retry-After"] = str(verdict.reset)
            self.refused += 1
            response = _error(429, "Too many requests", headers)
        else:
            response = self._dispatch(request)
            response.headers.update(headers)
        response.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return response

    def _dispatch(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :].strip():
            return _error(401, "Unauthorized")
        self._purge()
        if request.path == "/v1/projects":
            if request.method == "GET":
                return self._list()
            if request.method == "POST":
                return self._create(request)
            return _error(405, "Method not allowed")
        if (org := _ORG_PATH.match(request.path)) is not None:
            if request.method != "GET":
                return _error(405, "Method not allowed")
            rest = org.group("rest")
            if rest not in (None, "/projects"):
                return _error(404, "Not found")  # emulated: the organisation and its projects
            return self._organizations(request, org.group("slug"), rest == "/projects")
        match = _REF_PATH.match(request.path)
        if not match:
            return _error(404, "Not found")
        ref, rest = match.group("ref"), match.group("rest") or ""
        if not _REF.match(ref):
            return _error(400, "Invalid project ref")
        with self._lock:
            project = self._state["projects"].get(ref)
            project = dict(project) if project else None
        if project is None:
            return _error(404, "Project not found")
        routes: dict[tuple[str, str], Callable[[Request, dict[str, Any]], Response]] = {
            ("GET", ""): self._get,
            ("PATCH", ""): self._rename,
            ("DELETE", ""): self._delete,
            ("GET", "/health"): self._health,
            ("GET", "/api-keys"): self._api_keys,
            ("POST", "/database/query"): self._query,
            ("PATCH", "/database/password"): self._password,
        }
        handler = routes.get((request.method, rest))
        if handler is None:
            return _error(404, "Not found")
        return handler(request, project)

    def _list(self) -> Response:
        with self._lock:
            projects = [dict(p) for p in self._state["projects"].values()]
        projects.sort(key=lambda p: int(p["id"]))
        return Response(200, [self._project_body(p, database=True) for p in projects])

    def _create(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return _error(400, "Body must be an object")
        region = create_body_error(body)
        if isinstance(region, Response):
            return region
        if body["organization_slug"] not in self._known_organizations():
            return _error(403, FORBIDDEN)
        # The real API answers the create at once, the project UNKNOWN then COMING_UP
        # (the recorded exchange ../shared/specs/supabase-recorded/POST_v1_projects: 201,
        # status UNKNOWN), and provisions it afterwards; clients poll `GET
        # /v1/projects/{ref}` until ACTIVE_HEALTHY (Supabase's own database.build deploy,
        # supabase-community/database-build `waitForProjectToBeHealthy`). So here: the
        # role that carries the password now (catalogue work, milliseconds, and the
        # password is not kept to apply later), the record, then the database in the
        # background; the project stays COMING_UP until that database exists. A process
        # killed before it is made leaves the record pending, and the next start makes it.
        # A come-up time of 0 (tests, `DEMOCTL_LOCAL_COME_UP_SECONDS=0`) asks for a project
        # that is up when answered, which only a database made first can honour.
        at_once = self.come_up_seconds <= 0
        with self._lock:
            ref = self._new_ref(body["name"])
            self._creating.add(ref)  # reserved: creates run side by side
        try:
            if at_once:
                self.databases.make(ref)  # first, the record last: see add_project
            apply_password(self.postgres, ref, body["db_pass"])
            with self._lock:
                project = self._insert(ref, body["name"], body["organization_slug"], region)
                if not at_once:
                    project["database_pending"] = True
                self._save()
                project = dict(project)
        finally:
            with self._lock:
                self._creating.discard(ref)
        if not at_once:
            self.databases.submit(ref, self._provisioned)
        logger.info("-: emulated Supabase project %s created (%s)", ref, body["name"])
        return Response(201, self._project_body(project, database=False))

    def _provisioned(self, ref: str, error: BaseException | None) -> None:
        """A project's database is made (or could not be): record it. A project deleted
        meanwhile loses the database just made, so that nothing outlives its record."""
        with self._lock:
            stored = self._state["projects"].get(ref)
            gone = stored is None or stored.get("deleted") is not None
            if not gone and stored is not None:
                stored.pop("database_pending", None)
                if error is None:
                    stored["database_made"] = self.clock()
                else:
                    stored["init_failed"] = True
                self._save()
        if error is not None:
            logger.warning("-: emulated Supabase project %s failed to provision: %s", ref, error)
        elif gone:
            self.postgres.drop_database(ref)
            logger.info("-: emulated Supabase project %s was deleted while provisioning", ref)

    def _organizations(self, request: Request, slug: str | None, projects: bool) -> Response:
        # GET /v1/organizations (OrganizationResponseV1[]), /v1/organizations/{slug}
        # (V1OrganizationSlugResponse) and /v1/organizations/{slug}/projects
        # (OrganizationProjectsResponse), per ../shared/specs/supabase-management-api.json
        known = sorted(self._known_organizations())
        if slug is None:
            return Response(200, [{"id": o, "slug": o, "name": o} for o in known])
        if not _SLUG.match(slug):
            return _error(400, "slug must match ^[\\w-]+$")
        if slug not in known:
            return _error(403, FORBIDDEN)  # as for a create in an organisation not the token's
        if not projects:
            plan = self.plans.get(slug, DEFAULT_PLAN)
            return Response(
                200,
                {
                    "id": slug,
                    "name": slug,
                    "plan": plan,
                    "opt_in_tags": [],
                    "allowed_release_channels": ["ga"],
                },
            )
        try:
            offset = int(request.arg("offset", "0") or "0")
            limit = int(request.arg("limit", "100") or "100")
        except ValueError:
            return _error(400, "offset and limit must be integers")
        if offset < 0 or not 1 <= limit <= 100:
            return _error(400, "offset must be >= 0 and limit between 1 and 100")
        with self._lock:
            mine = [dict(p) for p in self._state["projects"].values()]
        mine = sorted((p for p in mine if p["organization_slug"] == slug), key=lambda p: p["id"])
        page = [
            {
                "ref": p["ref"],
                "name": p["name"],
                "cloud_provider": "AWS",
                "region": p["region"],
                "is_branch": False,
                "status": self.status_of(p),
                "inserted_at": iso(float(p["created"])),
                "databases": [],
            }
            for p in mine[offset : offset + limit]
        ]
        pagination = {"count": len(mine), "limit": limit, "offset": offset}
        return Response(200, {"projects": page, "pagination": pagination})

    def _known_organizations(self) -> frozenset[str]:
        with self._lock:
            seeded = {str(p["organization_slug"]) for p in self._state["projects"].values()}
        return self.organizations | seeded

    def _get(self, request: Request, project: dict[str, Any]) -> Response:
        return Response(200, self._project_body(project, database=True))

    def _delete(self, request: Request, project: dict[str, Any]) -> Response:
        # The recorded answer for a project in a transitional state; GOING_DOWN is one.
        if self.status_of(project) in {"UNKNOWN", "COMING_UP", "GOING_DOWN"}:
            return _error(400, "Project not ready for deletion.")
        ref = project["ref"]
        with self._lock:
            # marked before the drop: a database still being made (a forced status lets a
            # test delete such a project) is dropped by `_provisioned` when it is done
            pending = bool(self._state["projects"].get(ref, {}).get("database_pending"))
            if pending:
                self._state["projects"][ref]["deleted"] = self.clock()
                self._save()
        self.postgres.drop_database(ref)
        with self.postgres.admin() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"db_{ref}")))
        self._prepared.discard(ref)
        with self._lock:
            stored = self._state["projects"].get(ref)
            if stored is not None and not pending:
                stored["deleted"] = self.clock()
            self._save()
        logger.info("-: emulated Supabase project %s deleted (GOING_DOWN)", ref)
        return Response(
            200, {"id": int(project["id"]), "name": project["name"], "ref": ref, "slug": ref}
        )

    def _health(self, request: Request, project: dict[str, Any]) -> Response:
        raw = request.query.get("services")
        if not raw:
            return _error(400, "services must be specified")
        names = [n for value in raw for n in value.split(",") if n]
        bad = [n for n in names if n not in SERVICES]
        if bad or not names:
            return _error(400, f"each value in services must be one of {', '.join(SERVICES)}")
        status = self.status_of(project)
        service_status = (
            "ACTIVE_HEALTHY"
            if status == "ACTIVE_HEALTHY"
            else "COMING_UP"
            if status in {"UNKNOWN", "COMING_UP"}
            else "UNHEALTHY"
        )
        return Response(
            200,
            [
                {"name": n, "healthy": service_status == "ACTIVE_HEALTHY", "status": service_status}
                for n in names
            ],
        )

    def _api_keys(self, request: Request, project: dict[str, Any]) -> Response:
        reveal = (request.arg("reveal") or "false").lower() == "true"
        return Response(200, project_keys(self._state["salt"], project["ref"], reveal))

    def _rename(self, request: Request, project: dict[str, Any]) -> Response:
        # PATCH /v1/projects/{ref} (v1-update-a-project): V1UpdateProjectBody is
        # {"name": string, minLength 1, maxLength 256}, required; the answer is
        # V1ProjectRefResponse {id, ref, name} (../shared/specs/supabase-management-api.json)
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            return _error(400, "name must be a string of 1 to 256 characters")
        with self._lock:
            stored = self._state["projects"].get(project["ref"])
            if stored is None:
                return _error(404, "Project not found")
            stored["name"] = name
            self._save()
            answer = {"id": int(stored["id"]), "ref": stored["ref"], "name": name}
        logger.info("-: emulated Supabase project %s renamed (%s)", project["ref"], name)
        return Response(200, answer)

    def _password(self, request: Request, project: dict[str, Any]) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str) or len(password) < 4:
            return _error(400, "password must be longer than or equal to 4 characters")
        apply_password(self.postgres, project["ref"], password)
        with self._lock:
            stored = self._state["projects"].get(project["ref"])
            if stored is not None:
                stored["password_changes"] = int(stored.get("password_changes", 0)) + 1
                self._save()
        return Response(200, {"message": "Database password updated"})

    def _query(self, request: Request, project: dict[str, Any]) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, str) or not query:
            return _error(400, "query must be a non-empty string")
        if self.status_of(project) != "ACTIVE_HEALTHY":
            return _error(400, f"Project is not ready to run queries: {self.status_of(project)}")
        if not self.database_ready(project):
            # ACTIVE_HEALTHY runs ahead of the database accepting connections; the API
            # then answers 500 (the spec's "Failed to run sql query") with the driver's
            # message, as reported in supabase/supabase issues #45025 and #48055.
            return _error(
                500, "Failed to run sql query: Connection terminated due to connection timeout"
            )
        parameters = body.get("parameters")
        try:
            prepare(self.postgres, project["ref"], self._prepared)
            conn = self.postgres.connect(project["ref"], user=QUERY_ROLE)
        except psycopg.OperationalError as exc:
            return _error(500, f"Failed to run sql query: {str(exc).strip()[:200]}")
        try:
            with conn:
                rows = execute(conn, query, parameters)
        except psycopg.Error as exc:
            diag = exc.diag
            detail = diag.message_primary or str(exc).strip()
            code = f"{diag.sqlstate}: " if diag.sqlstate else ""
            return _error(400, f"Failed to run sql query: ERROR:  {code}{detail}")
        return Response(201, rows, {"Cache-Control": "no-cache"})

    # --- inspection -----------------------------------------------------------------

    def api_keys(self, ref: str) -> list[dict[str, Any]]:
        """A project's keys, revealed, without a request: for leak scans, which over the API
        would meet the rate limits."""
        return project_keys(self._state["salt"], ref, True)

    def inspect(self) -> dict[str, Any]:
        """Projects, their databases and table row counts. No passwords, no keys."""
        with self._lock:
            projects = [dict(p) for p in self._state["projects"].values()]
        databases = set(self.postgres.databases())
        out = []
        for project in sorted(projects, key=lambda p: int(p["id"])):
            ref = project["ref"]
            tables = table_counts(self.postgres, ref) if ref in databases else {}
            out.append(
                {
                    "ref": ref,
                    "name": project["name"],
                    "organization_slug": project["organization_slug"],
                    "region": project["region"],
                    "status": self.status_of(project),
                    "created_at": iso(float(project["created"])),
                    "database": ref if ref in databases else None,
                    "tables": tables,
                    "password_changes": int(project.get("password_changes", 0)),
                }
            )
        return {
            "projects": out,
            "requests": dict(sorted(self.server.requests.items())),
            "faults_injected": dict(sorted(self.server.faults_injected.items())),
        }
