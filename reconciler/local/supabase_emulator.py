"""A local Supabase Management API v1 whose projects are real PostgreSQL databases.

Owns the emulated endpoints democtl uses (list/create/get/delete projects, health,
api-keys, database/query, database/password) with the status codes and shapes of
../shared/specs (the OpenAPI spec and the recorded real exchanges), the project
life cycle (UNKNOWN -> COMING_UP -> ACTIVE_HEALTHY by time since creation, read
from an injected clock; the database takes queries `database_lag_seconds` after
ACTIVE_HEALTHY, answering 500 before; a deleted project is GOING_DOWN for
`going_down_seconds`, then gone), the refusals of the real API (403 for an
organisation the token is not a member of, 400 for values outside the spec's
enums), queries run as a non-superuser role with the attributes of Supabase's
`postgres`, the 120/minute rate limit per user, scope and endpoint with X-RateLimit-*
headers (`local.ratelimit`), and the JSON
state file under the state dir that lets successive commands share one world.
Faults and request counters come from `local.server.EmulatorServer`.

May import: the standard library, psycopg, `reconciler.local.server`,
`reconciler.local.ratelimit` and `reconciler.local.postgres`. Stores no secret:
database passwords are applied to a real role and forgotten; keys are derived from the
ref and a per-state salt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import random
import re
import ssl
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from reconciler.local.postgres import LocalPostgres
from reconciler.local.ratelimit import FixedWindowLimiter
from reconciler.local.server import EmulatorServer, Faults, Request, Response, ServedEmulator

logger = logging.getLogger(__name__)

STATE_FILE = "supabase.json"
RATE_LIMIT = 120
RATE_WINDOW = 60.0
SERVICES = ("auth", "db", "db_postgres_user", "pooler", "realtime", "rest", "storage", "pg_bouncer")
REGIONS = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-east-1", "ap-southeast-1",
        "ap-northeast-1", "ap-northeast-2", "ap-southeast-2", "eu-west-1", "eu-west-2",
        "eu-west-3", "eu-north-1", "eu-central-1", "eu-central-2", "ca-central-1",
        "ap-south-1", "sa-east-1",
    }
)  # fmt: skip
CREATE_FIELDS = frozenset(
    {
        "db_pass", "name", "organization_id", "organization_slug", "plan", "region",
        "region_selection", "kps_enabled", "desired_instance_size", "template_url",
    }
)  # fmt: skip
# V1CreateProjectBody.desired_instance_size in ../shared/specs/supabase-management-api.json
INSTANCE_SIZES = (
    "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge",
    "12xlarge", "16xlarge", "24xlarge", "24xlarge_optimized_memory", "24xlarge_optimized_cpu",
    "24xlarge_high_memory", "48xlarge", "48xlarge_optimized_memory", "48xlarge_optimized_cpu",
    "48xlarge_high_memory",
)  # fmt: skip
PLANS = ("free", "pro")
SMART_GROUPS = {"americas": "us-east-1", "emea": "eu-central-1", "apac": "ap-south-1"}
# What the API answers a token with no rights on an organisation: 403 (the spec's
# "Forbidden action"), with the message the fine-grained permission check gives
# (supabase/cli issue #6392 quotes it). An organisation the token cannot see looks the same.
FORBIDDEN = (
    "Your account does not have the necessary privileges to access this endpoint. For more "
    "details, refer to our documentation https://supabase.com/docs/guides/platform/access-control"
)
_ORG_PATH = re.compile(r"^/v1/organizations/(?P<slug>[^/]+)(/.*)?$")
_REF_PATH = re.compile(r"^/v1/projects/(?P<ref>[^/]+)(?P<rest>/.*)?$")
_SLUG = re.compile(r"^[\w-]+$")
_REF = re.compile(r"^[a-z]{20}$")
_DB_VERSION = "15.8.1.000"
# The role the query endpoint runs as. Supabase calls it `postgres`; in this cluster
# that name belongs to the bootstrap superuser, so it has its own name and the
# attributes of Supabase's `postgres` (NOSUPERUSER: superuser-only SQL fails here as
# it fails there).
QUERY_ROLE = "supabase_postgres"
QUERY_ROLE_ATTRIBUTES = "NOSUPERUSER LOGIN INHERIT CREATEROLE CREATEDB REPLICATION BYPASSRLS"


def _iso(seconds: float) -> str:
    return (
        dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)


def _not_one_of(field: str, values: list[str]) -> str:
    return f"{field} must be one of the following values: {', '.join(values)}"


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
        going_down_seconds: float = 30.0,
        database_lag_seconds: float = 1.0,
        faults: Faults | None = None,
        rate_limit: int = RATE_LIMIT,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = postgres
        self.clock = clock
        self.come_up_seconds = come_up_seconds
        # The organisations the token is a member of; a seeded project's organisation
        # counts too (it exists, since a project lives in it).
        self.organizations = frozenset(organizations)
        # A deleted project stays listed as GOING_DOWN this long, then is gone.
        self.going_down_seconds = going_down_seconds
        # How long after ACTIVE_HEALTHY the database still refuses connections.
        self.database_lag_seconds = database_lag_seconds
        self.limiter = FixedWindowLimiter(rate_limit, RATE_WINDOW, clock)
        self.refused = 0  # 429s answered for an exceeded bucket (not injected faults)
        self._prepared: set[str] = set()  # databases whose query role is set up
        self._lock = threading.RLock()
        self._state: dict[str, Any] = self._load()
        self.server = EmulatorServer(
            "supabase", self.handle, faults=faults, route_of=self._route, port=port, tls=tls
        )

    # --- lifecycle ------------------------------------------------------------------

    def project_url(self, ref: str) -> str:
        return f"{self.url}/project/{ref}"

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
            self._fresh_database(ref)  # first: see _create
            project = self._insert(ref, name, organization_slug, "us-east-1")
            if created is not None:
                project["created"] = created
            if status is not None:
                project["forced_status"] = status
            self._save()
        return ref

    def _fresh_database(self, ref: str) -> None:
        """An empty database for a new project, as the real service gives: one left by a
        creation killed before its record is unrecorded (the ref is free), so dropped."""
        self.postgres.drop_database(ref)
        self.postgres.create_database(ref)

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
            if ref not in self._state["projects"]:
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
        age = self.clock() - float(project["created"])
        if age <= 0:
            return "UNKNOWN"
        if age < self.come_up_seconds:
            return "COMING_UP"
        return "ACTIVE_HEALTHY"

    def database_ready(self, project: dict[str, Any]) -> bool:
        """The database accepts connections a moment after the API says ACTIVE_HEALTHY."""
        if project.get("forced_status"):
            return True  # a forced status is a test's statement about the whole project
        age = self.clock() - float(project["created"])
        return age >= self.come_up_seconds + self.database_lag_seconds

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
            "created_at": _iso(float(project["created"])),
        }
        if database:
            body["database"] = {
                "host": f"db.{project['ref']}.supabase.red",
                "version": _DB_VERSION,
                "postgres_engine": "15",
                "release_channel": "ga",
            }
        return body

    def _keys(self, ref: str, reveal: bool) -> list[dict[str, Any]]:
        def derive(kind: str) -> str:
            return hashlib.sha256(f"{self._state['salt']}:{ref}:{kind}".encode()).hexdigest()

        def jwt(role: str) -> str:
            return f"eyJhbGciOiJIUzI1NiJ9.{role}-{ref}.{derive(role)[:43]}"

        publishable = f"sb_publishable_{derive('publishable')[:32]}"
        secret = f"sb_secret_{derive('secret')[:32]}"
        stamp = _iso(0)
        return [
            {"name": "anon", "api_key": jwt("anon"), "id": "anon", "type": "legacy",
             "hash": derive("anon-hash")[:43], "prefix": jwt("anon")[:5],
             "description": "Legacy anon API key"},
            {"name": "service_role", "api_key": jwt("service_role"), "id": "service_role",
             "type": "legacy", "hash": derive("sr-hash")[:43], "prefix": jwt("service_role")[:5],
             "description": "Legacy service_role API key"},
            {"id": str(UUID(derive("pub-id")[:32])), "name": "default", "type": "publishable",
             "api_key": publishable, "description": None, "secret_jwt_template": None,
             "hash": derive("pub-hash")[:43], "prefix": publishable[:20],
             "inserted_at": stamp, "updated_at": stamp},
            {"id": str(UUID(derive("sec-id")[:32])), "name": "default", "type": "secret",
             "api_key": secret if reveal else secret[:14] + "\u00b7" * 26,
             "description": None, "secret_jwt_template": {"role": "service_role"},
             "hash": derive("sec-hash")[:43], "prefix": secret[:14],
             "inserted_at": stamp, "updated_at": stamp},
        ]  # fmt: skip

    # --- HTTP -----------------------------------------------------------------------

    @staticmethod
    def _route(request: Request) -> str:
        match = _REF_PATH.match(request.path)
        if match:
            return f"{request.method} /v1/projects/{{ref}}{match.group('rest') or ''}"
        return f"{request.method} {request.path}"

    def scope_of(self, request: Request) -> tuple[str, str, str]:
        """The bucket a request counts against: (user, scope, endpoint), as the docs key it
        (apps/docs/content/_partials/api_rate_limits.mdx in supabase/supabase): a project
        ref in the path, else an organisation (in the path, or the body's
        `organization_slug` for `POST /v1/projects`), else the user alone."""
        auth = request.headers.get("authorization", "")
        user = "token:" + hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else "ip"
        endpoint = self._route(request)
        match = _REF_PATH.match(request.path)
        if match:
            return user, "project:" + match.group("ref"), endpoint
        org = _ORG_PATH.match(request.path)
        if org:
            return user, "organization:" + org.group("slug"), endpoint
        if request.method == "POST" and request.path == "/v1/projects":
            with contextlib.suppress(ValueError):
                body = request.json()
                if isinstance(body, dict) and isinstance(body.get("organization_slug"), str):
                    return user, "organization:" + body["organization_slug"], endpoint
        return user, "user", endpoint

    @property
    def rate_limit(self) -> int:
        return self.limiter.limit

    @rate_limit.setter
    def rate_limit(self, value: int) -> None:
        self.limiter.limit = value

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
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            return _error(400, f"property {unknown[0]} should not exist")
        for required in ("db_pass", "name", "organization_slug"):
            if not isinstance(body.get(required), str) or not body[required]:
                return _error(400, f"{required} must be a non-empty string")
        if len(body["name"]) > 256:
            return _error(400, "name must be shorter than or equal to 256 characters")
        if not _SLUG.match(body["organization_slug"]):
            return _error(400, "organization_slug must match ^[\\w-]+$")
        if "region" in body and "region_selection" in body:
            return _error(400, "Only one of region or region_selection can be specified.")
        # The spec's enums (V1CreateProjectBody), answered as the API's validation
        # answers every body error: 400 with {"message"}.
        region = body.get("region", "us-east-1")
        if region not in REGIONS:
            return _error(400, _not_one_of("region", sorted(REGIONS)))
        selection = body.get("region_selection")
        if selection is not None:
            if not isinstance(selection, dict) or selection.get("type") not in {
                "specific",
                "smartGroup",
            }:
                return _error(400, _not_one_of("region_selection.type", ["specific", "smartGroup"]))
            if set(selection) - {"type", "code"}:
                extra = sorted(set(selection) - {"type", "code"})[0]
                return _error(400, f"property region_selection.{extra} should not exist")
            code = selection.get("code")
            if selection["type"] == "smartGroup":
                if code not in SMART_GROUPS:
                    return _error(400, _not_one_of("region_selection.code", list(SMART_GROUPS)))
                region = SMART_GROUPS[str(code)]
            elif code not in REGIONS:
                return _error(400, _not_one_of("region_selection.code", sorted(REGIONS)))
            else:
                region = str(code)
        size = body.get("desired_instance_size")
        if size is not None and size not in INSTANCE_SIZES:
            return _error(400, _not_one_of("desired_instance_size", list(INSTANCE_SIZES)))
        if body.get("plan") is not None and body["plan"] not in PLANS:
            return _error(400, _not_one_of("plan", list(PLANS)))
        if "kps_enabled" in body and not isinstance(body["kps_enabled"], bool):
            return _error(400, "kps_enabled must be a boolean value")
        if body["organization_slug"] not in self._known_organizations():
            return _error(403, FORBIDDEN)
        with self._lock:
            # The database and its role first, the record last: a process killed in between
            # leaves at most an unrecorded database, which the next create of that name
            # (the same ref: refs derive from the state) replaces, never a project whose
            # database does not exist. Under the lock, so no other create picks this ref.
            ref = self._new_ref(body["name"])
            self._fresh_database(ref)
            self._apply_password(ref, body["db_pass"])
            project = self._insert(ref, body["name"], body["organization_slug"], region)
            self._save()
            project = dict(project)
        logger.info("-: emulated Supabase project %s created (%s)", ref, body["name"])
        return Response(201, self._project_body(project, database=False))

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
        self.postgres.drop_database(ref)
        with self.postgres.admin() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"db_{ref}")))
        self._prepared.discard(ref)
        with self._lock:
            stored = self._state["projects"].get(ref)
            if stored is not None:
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
        return Response(200, self._keys(project["ref"], reveal))

    def _password(self, request: Request, project: dict[str, Any]) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str) or len(password) < 4:
            return _error(400, "password must be longer than or equal to 4 characters")
        self._apply_password(project["ref"], password)
        with self._lock:
            stored = self._state["projects"].get(project["ref"])
            if stored is not None:
                stored["password_changes"] = int(stored.get("password_changes", 0)) + 1
                self._save()
        return Response(200, {"message": "Database password updated"})

    def _apply_password(self, ref: str, password: str) -> None:
        """A real role per project carries the password, sent pre-hashed (PostgreSQL's md5
        format) so that the plain text reaches neither the server nor its log."""
        name = f"db_{ref}"
        digest = "md5" + hashlib.md5((password + name).encode()).hexdigest()  # noqa: S324
        with self.postgres.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            verb = "ALTER" if exists.fetchone() else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(digest)
                )
            )

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
            self._prepare(project["ref"])
            conn = self.postgres.connect(project["ref"], user=QUERY_ROLE)
        except psycopg.OperationalError as exc:
            return _error(500, f"Failed to run sql query: {str(exc).strip()[:200]}")
        try:
            with conn:
                rows = self._execute(conn, query, parameters)
        except psycopg.Error as exc:
            diag = exc.diag
            detail = diag.message_primary or str(exc).strip()
            code = f"{diag.sqlstate}: " if diag.sqlstate else ""
            return _error(400, f"Failed to run sql query: ERROR:  {code}{detail}")
        return Response(201, rows, {"Cache-Control": "no-cache"})

    def _prepare(self, ref: str) -> None:
        """Give the project's database the query role Supabase's `postgres` is: no
        superuser, but CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS, all privileges on
        the database and ownership of the public schema (docs: database/postgres/
        roles-superuser, "Superuser access is not given"). Once per database and process."""
        if ref in self._prepared:
            return
        role = sql.Identifier(QUERY_ROLE)
        with self.postgres.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (QUERY_ROLE,))
            if exists.fetchone() is None:
                # two emulators on one cluster may race here: the loser's error is benign
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute(sql.SQL("CREATE ROLE {}").format(role))
            conn.execute(sql.SQL("ALTER ROLE {} WITH " + QUERY_ROLE_ATTRIBUTES).format(role))
            conn.execute(
                sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(ref), role)
            )
        with self.postgres.connect(ref) as conn:
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
        self._prepared.add(ref)

    @staticmethod
    def _execute(
        conn: psycopg.Connection[tuple[object, ...]], query: str, parameters: Any
    ) -> list[dict[str, Any]]:
        """Run the SQL for real; answer the rows of the last statement that returned any."""
        if parameters:
            cursor: psycopg.Cursor[tuple[object, ...]] = psycopg.RawCursor(conn)
            cursor.execute(query, list(parameters))
        else:
            cursor = conn.cursor()
            cursor.execute(query.encode())  # no parameters: simple protocol, many statements
        rows: list[dict[str, Any]] = []
        while True:
            if cursor.description is not None:
                names = [c.name for c in cursor.description]
                rows = [
                    {n: (v if isinstance(v, str | int | float | bool | type(None) | list | dict)
                         else _json_value(v)) for n, v in zip(names, row, strict=True)}
                    for row in cursor.fetchall()
                ]  # fmt: skip
            if not cursor.nextset():
                break
        return rows

    # --- inspection -----------------------------------------------------------------

    def inspect(self) -> dict[str, Any]:
        """Projects, their databases and table row counts. No passwords, no keys."""
        with self._lock:
            projects = [dict(p) for p in self._state["projects"].values()]
        databases = set(self.postgres.databases())
        out = []
        for project in sorted(projects, key=lambda p: int(p["id"])):
            ref = project["ref"]
            tables: dict[str, int] = {}
            if ref in databases:
                with self.postgres.connect(ref) as conn:
                    names = conn.execute(
                        "SELECT table_schema, table_name FROM information_schema.tables "
                        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
                        "('pg_catalog', 'information_schema') ORDER BY 1, 2"
                    ).fetchall()
                    for schema, table in names:
                        count = conn.execute(
                            sql.SQL("SELECT count(*) FROM {}.{}").format(
                                sql.Identifier(str(schema)), sql.Identifier(str(table))
                            )
                        ).fetchone()
                        tables[f"{schema}.{table}"] = int(str(count[0])) if count else 0
            out.append(
                {
                    "ref": ref,
                    "name": project["name"],
                    "organization_slug": project["organization_slug"],
                    "region": project["region"],
                    "status": self.status_of(project),
                    "created_at": _iso(float(project["created"])),
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
