"""In-memory fakes of every provider Protocol, recording their calls.

Each fake keeps just enough state to behave like its provider (projects that
come up, records that adopt, Secrets that need their namespace) and can be told
to fail: `fail_on[(operation, demo_id or ref)] = error` raises once per entry, and
`crash_on` raises `Crash` (the process dying mid-cycle: nothing after it runs, no
status is written) once per entry.
`gate` is called at the start of every call, so a test can hold calls in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from reconciler.marks import DEFAULT_OWNER_ID, project_name, record_comment
from reconciler.plan import Observed
from reconciler.providers.base import (
    SECRET_MIGRATIONS_ANNOTATION,
    SECRET_PROJECT_REF_ANNOTATION,
    SECRET_SEED_ANNOTATION,
    ApiKeys,
    DesiredRecord,
    DnsRecord,
    NamespaceMeta,
    NamespaceState,
    Project,
    ProviderError,
)

MUTATING = frozenset(
    {
        "create_project",
        "set_db_password",
        "delete_project",
        "ensure_records",
        "delete_records",
        "apply_secret",
        "delete_secret",
        "migrate",
        "seed",
    }
)
# what goes before a demo id in a project name: the settings' prefix and the owner id
PREFIX = project_name("democtl-", DEFAULT_OWNER_ID, "")
COMMENT = record_comment(DEFAULT_OWNER_ID, "{}")


class Crash(BaseException):
    """The reconciler process dies here; a BaseException, so no `except Exception` stops it."""


@dataclass
class Recorder:
    calls: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    fail_on: dict[tuple[str, str], ProviderError] = field(default_factory=dict)
    crash_on: set[tuple[str, str]] = field(default_factory=set)
    gate: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: str, key: str, *args: object) -> None:
        if self.gate is not None:
            self.gate()
        with self.lock:
            self.calls.append((operation, args))
            error = self.fail_on.pop((operation, key), None)
            crash = (operation, key) in self.crash_on
            self.crash_on.discard((operation, key))
        if crash:
            raise Crash(f"crashed at {operation} {key}")
        if error is not None:
            raise error

    def mutations(self) -> list[tuple[str, tuple[object, ...]]]:
        return [c for c in self.calls if c[0] in MUTATING]


@dataclass
class FakeSupabase(Recorder):
    projects: dict[str, Project] = field(default_factory=dict)
    created_at: datetime | None = None
    comes_up_healthy: bool = True
    passwords: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def project_name(self, demo_id: str) -> str:
        return PREFIX + demo_id

    def list_projects(self) -> list[Project]:
        self.record("list_projects", "")
        return sorted(self.projects.values(), key=lambda p: p.ref)

    def create_project(self, demo_id: str, db_pass: str) -> Project:
        self.record("create_project", demo_id, demo_id)
        name = self.project_name(demo_id)
        if any(p.name == name for p in self.projects.values()):
            raise ProviderError(
                "supabase", "create project", "already exists", demo_id=demo_id, status_code=409
            )
        with self.lock:
            self.counter += 1
            ref = f"ref{self.counter:04d}{demo_id[5:]}"
        status = "ACTIVE_HEALTHY" if self.comes_up_healthy else "COMING_UP"
        project = Project(ref, name, status, demo_id, "us-east-1", self.created_at)
        self.projects[ref] = project
        self.passwords[ref] = db_pass
        return project

    def get_project(self, ref: str) -> Project | None:
        self.record("get_project", ref, ref)
        return self.projects.get(ref)

    def is_healthy(self, ref: str) -> bool:
        self.record("is_healthy", ref, ref)
        project = self.projects.get(ref)
        return project is not None and project.healthy

    def run_sql(self, ref: str, query: str) -> list[dict[str, object]]:
        self.record("run_sql", ref, ref, query)
        return []

    def api_keys(self, ref: str) -> ApiKeys:
        self.record("api_keys", ref, ref)
        return ApiKeys(anon=f"anon-{ref}", service_role=f"SERVICE-ROLE-SECRET-{ref}")

    def set_db_password(self, ref: str, password: str) -> None:
        self.record("set_db_password", ref, ref)
        self.passwords[ref] = password

    def rename_project(self, ref: str, demo_id: str) -> None:
        self.record("rename_project", ref, ref, demo_id)
        project = self.projects[ref]
        self.projects[ref] = replace(project, name=self.project_name(demo_id), demo_id=demo_id)

    def delete_project(self, ref: str) -> None:
        self.record("delete_project", ref, ref)
        self.projects.pop(ref, None)

    def project_url(self, ref: str) -> str:
        return f"https://{ref}.supabase.test"

    def bring_up(self) -> None:
        for ref, project in list(self.projects.items()):
            if project.status == "COMING_UP":
                self.projects[ref] = replace(project, status="ACTIVE_HEALTHY")


@dataclass
class FakeDns(Recorder):
    records: dict[str, DnsRecord] = field(default_factory=dict)
    counter: int = 0

    def list_records(self) -> list[DnsRecord]:
        self.record("list_records", "")
        return sorted(self.records.values(), key=lambda r: (r.name, r.id))

    def ensure_records(self, demo_id: str, desired: list[DesiredRecord]) -> list[DnsRecord]:
        self.record("ensure_records", demo_id, demo_id, tuple(desired))
        result = []
        for want in desired:
            existing = next((r for r in self.records.values() if r.name == want.name), None)
            with self.lock:
                self.counter += 1
                record_id = existing.id if existing else f"rec{self.counter:04d}"
            record = DnsRecord(
                record_id,
                want.name,
                want.type,
                want.content,
                want.proxied,
                1,
                COMMENT.format(demo_id),
                demo_id,
            )
            self.records[record_id] = record
            result.append(record)
        return result

    def delete_records(self, demo_id: str, records: list[DnsRecord]) -> None:
        self.record("delete_records", demo_id, demo_id, tuple(r.id for r in records))
        for record in records:
            self.records.pop(record.id, None)


@dataclass
class FakeCluster(Recorder):
    namespaces: dict[str, NamespaceState] = field(default_factory=dict)
    foreign: dict[str, NamespaceMeta] = field(default_factory=dict)  # namespaces not ours
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    annotations: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    resets: list[tuple[str, str, str]] = field(default_factory=list)

    def list_namespaces(self) -> list[NamespaceState]:
        self.record("list_namespaces", "")
        return sorted(self.namespaces.values(), key=lambda n: n.name)

    def list_all_namespaces(self) -> list[NamespaceMeta]:
        self.record("list_all_namespaces", "")
        ours = {
            n.name: NamespaceMeta(
                n.name,
                (
                    ("app.kubernetes.io/managed-by", "democtl"),
                    ("demos.splits.network/id", n.demo_id or ""),
                    ("demos.splits.network/owner-id", DEFAULT_OWNER_ID),
                ),
            )
            for n in self.namespaces.values()
        }
        return sorted({**self.foreign, **ours}.values(), key=lambda n: n.name)

    def apply_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        self.record("apply_secret", namespace, namespace, name)
        if namespace not in self.namespaces:
            raise ProviderError("kubernetes", "apply secret", f"namespace {namespace} not found")
        self.secrets[(namespace, name)] = dict(data)
        self.annotations[(namespace, name)] = dict(annotations or {})
        # like the real adapter's listing: the Secret is there, with what its annotations
        # record and its two public values
        marks = annotations or {}
        self.namespaces[namespace] = replace(
            self.namespaces[namespace],
            secret_present=True,
            secret_project_ref=marks.get(SECRET_PROJECT_REF_ANNOTATION),
            secret_migrations=marks.get(SECRET_MIGRATIONS_ANNOTATION),
            secret_seed=marks.get(SECRET_SEED_ANNOTATION),
            secret_url=data.get("SUPABASE_URL"),
            secret_anon_key=data.get("SUPABASE_ANON_KEY"),
        )

    def delete_secret(self, namespace: str, name: str) -> None:
        self.record("delete_secret", namespace, namespace, name)
        self.secrets.pop((namespace, name), None)
        self.annotations.pop((namespace, name), None)

    def reset_release(self, namespace: str, name: str, token: str) -> None:
        self.record("reset_release", namespace, namespace, name, token)
        self.resets.append((namespace, name, token))

    def node_allocatable(self) -> tuple[str, str]:
        return "64", "256Gi"

    def sync(self, demo_id: str, *, healthy: bool = True) -> None:
        """Play Flux: the namespace rendered for a demo appears (and its pods run)."""
        old = self.namespaces.get(demo_id)
        self.namespaces[demo_id] = NamespaceState(
            name=demo_id,
            demo_id=demo_id,
            phase="Active",
            pods_ready=3 if healthy else 0,
            pods_expected=3,
            release_ready=healthy,
            secret_present=old.secret_present if old else False,
            secret_project_ref=old.secret_project_ref if old else None,
            secret_migrations=old.secret_migrations if old else None,
            secret_seed=old.secret_seed if old else None,
            secret_url=old.secret_url if old else None,
            secret_anon_key=old.secret_anon_key if old else None,
        )


@dataclass
class FakeProber(Recorder):
    failing: set[str] = field(default_factory=set)

    def probe(self, url: str) -> bool:
        self.record("probe", url, url)
        return not any(part in url for part in self.failing)


@dataclass
class FakeDatabase(Recorder):
    """Stands in for reconciler.database's migrate and seed."""

    names: tuple[str, ...] = ("0001_schema.sql", "0002_demo_views.sql")
    applied: dict[str, list[str]] = field(default_factory=dict)
    seeded: set[str] = field(default_factory=set)

    def migrate(self, provider: object, ref: str, demo_id: str) -> list[str]:
        self.record("migrate", demo_id, ref, demo_id)
        self.applied[ref] = list(self.names)
        return list(self.names)

    def seed(
        self,
        provider: object,
        ref: str,
        demo_id: str,
        demo_type: str,
        size: str,
        company_name: str | None,
    ) -> bool:
        self.record("seed", demo_id, ref, demo_id, demo_type, size, company_name)
        self.seeded.add(ref)
        return True


@dataclass
class World:
    supabase: FakeSupabase = field(default_factory=FakeSupabase)
    dns: FakeDns = field(default_factory=FakeDns)
    cluster: FakeCluster = field(default_factory=FakeCluster)
    prober: FakeProber = field(default_factory=FakeProber)
    database: FakeDatabase = field(default_factory=FakeDatabase)

    def recorders(self) -> list[Recorder]:
        return [self.supabase, self.dns, self.cluster, self.prober, self.database]

    def mutations(self) -> list[tuple[str, tuple[object, ...]]]:
        return [c for r in self.recorders() for c in r.mutations()]

    def forget_calls(self) -> None:
        for recorder in self.recorders():
            recorder.calls.clear()

    def observe(self) -> Observed:
        def attempt(listing: Callable[[], list[object]]) -> tuple[object, ...] | None:
            try:
                return tuple(listing())
            except ProviderError:
                return None

        return Observed(
            projects=attempt(self.supabase.list_projects),  # type: ignore[arg-type]
            records=attempt(self.dns.list_records),  # type: ignore[arg-type]
            namespaces=attempt(self.cluster.list_namespaces),  # type: ignore[arg-type]
            all_namespaces=attempt(self.cluster.list_all_namespaces),  # type: ignore[arg-type]
        )

    def providers(self):  # type: ignore[no-untyped-def]
        from reconciler.apply import Providers

        return Providers(
            supabase=self.supabase,
            dns=self.dns,
            cluster=self.cluster,
            prober=self.prober,
            migrate=self.database.migrate,
            seed=self.database.seed,
        )
