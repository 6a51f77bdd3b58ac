"""What one cycle may conclude from the observation: `Observed`, `_Sight`, `_Context`.

Owns the trust rule (a provider whose listing failed, or came back empty while
status files claim resources on it, is "blind": nothing is deleted there), the
per-demo view of each listing, the foreign-namespace check, and the context every
per-demo decision reads. Pure. May import the model, the provider value types and
`records`; never an adapter, git, httpx, cloudflare, kubernetes or psycopg.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from reconciler.marks import Owner
from reconciler.model import Demo, DemoStatus, Phase, Settings
from reconciler.plan.records import namespace_of
from reconciler.providers.base import DnsRecord, NamespaceMeta, NamespaceState, Project


@dataclass(frozen=True)
class Observed:
    """One listing per provider; None means that listing failed this cycle."""

    projects: tuple[Project, ...] | None = ()
    records: tuple[DnsRecord, ...] | None = ()
    namespaces: tuple[NamespaceState, ...] | None = ()
    # every namespace of the cluster, marked or not: a new demo must not take a foreign one
    all_namespaces: tuple[NamespaceMeta, ...] | None = ()
    # demo id -> its last request (None: none in the window); a demo whose read failed, or
    # was not asked, is absent: no verdict on it
    last_accessed: Mapping[str, datetime | None] = field(default_factory=dict)


@dataclass(frozen=True)
class _Sight:
    """What one cycle may conclude from each provider's listing."""

    projects: tuple[Project, ...] | None
    records: tuple[DnsRecord, ...] | None
    namespaces: tuple[NamespaceState, ...] | None
    blind: Mapping[str, str]  # provider -> why it cannot be trusted this cycle
    # The DNS listing answered, even if emptily: creating missing records is then
    # safe (ensure adopts what exists); only deleting needs the listing trusted.
    dns_listed: bool = False
    all_namespaces: tuple[NamespaceMeta, ...] | None = ()

    @classmethod
    def of(cls, observed: Observed, statuses: Mapping[str, DemoStatus]) -> _Sight:
        blind: dict[str, str] = {}
        settled = [s for s in statuses.values() if s.phase != Phase.DESTROYING]
        claims = {
            "supabase": [s.id for s in settled if s.supabase.projectRef],
            "dns": [s.id for s in settled if s.dns],
            "kubernetes": [s.id for s in settled if s.phase in (Phase.READY, Phase.DEGRADED)],
        }
        listings: dict[str, tuple[object, ...] | None] = {
            "supabase": observed.projects,
            "dns": observed.records,
            "kubernetes": observed.namespaces,
        }
        for provider, listing in listings.items():
            if listing is None:
                blind[provider] = f"the {provider} listing failed this cycle"
            elif not listing and claims[provider]:
                ids = ", ".join(sorted(claims[provider])[:3])
                trust = (
                    "nothing is deleted on it, missing records are created"
                    if provider == "dns"
                    else "not trusted"
                )
                blind[provider] = (
                    f"the {provider} listing came back empty while status files say resources "
                    f"exist ({ids}{'...' if len(claims[provider]) > 3 else ''}); {trust}"
                )
        return cls(
            projects=None if "supabase" in blind else observed.projects,
            records=None if "dns" in blind else observed.records,
            namespaces=None if "kubernetes" in blind else observed.namespaces,
            blind=blind,
            dns_listed=observed.records is not None,
            all_namespaces=observed.all_namespaces,
        )

    def namespace_taken(self, demo_id: str, owner: Owner) -> str | None:
        """Why a new demo must not render its namespace, or None when the name is free.

        Flux or Argo CD would apply the demo's Namespace over a foreign one of the same
        name and prune it when the demo goes: a name taken by something without
        democtl's mark for this demo is a conflict for a human. Not knowing (the listing
        failed) is no answer either way: the demo waits.
        """
        name = namespace_of(demo_id)
        if self.all_namespaces is None:
            return f"the namespace listing failed: cannot tell whether namespace {name} is free"
        found = next((n for n in self.all_namespaces if n.name == name), None)
        if found is None or found.marked_for(demo_id, owner):
            return None
        return (
            f"namespace {name} already exists without democtl's mark for this installation "
            "(app.kubernetes.io/managed-by=democtl, demos.splits.network/id, "
            f"demos.splits.network/owner-id={owner.id}): refusing to "
            "take it over; remove it or rename the demo"
        )

    def projects_of(self, demo_id: str) -> list[Project]:
        return self._by_demo[0].get(demo_id, [])

    def records_of(self, demo_id: str) -> list[DnsRecord]:
        return self._by_demo[1].get(demo_id, [])

    def namespace_of(self, demo_id: str) -> NamespaceState | None:
        return self._by_demo[2].get(demo_id)

    @cached_property
    def _by_demo(
        self,
    ) -> tuple[dict[str, list[Project]], dict[str, list[DnsRecord]], dict[str, NamespaceState]]:
        projects: dict[str, list[Project]] = {}
        for p in sorted(self.projects or (), key=lambda p: p.ref):
            # A project going down is deleted already: it is gone for a teardown, no
            # duplicate, nothing to adopt and never deleted again.
            if not p.going_down:
                projects.setdefault(p.demo_id, []).append(p)
        records: dict[str, list[DnsRecord]] = {}
        for r in sorted(self.records or (), key=lambda r: (r.name, r.id)):
            if r.demo_id:
                records.setdefault(r.demo_id, []).append(r)
        namespaces = {n.demo_id: n for n in self.namespaces or () if n.demo_id}
        return projects, records, namespaces


@dataclass
class _Context:
    settings: Settings
    sight: _Sight
    now: datetime
    may_delete: bool
    known_migrations: tuple[str, ...] | None
    settings_hash: str = ""
    health_since: datetime | None = None  # the previous cycle: see provision._supabase_due
    # demo id -> the warm pool member it claims this cycle (see pool.assign_claims)
    claims: Mapping[str, Project] = field(default_factory=dict)

    def same_cause(self, demo: Demo, status: DemoStatus) -> bool:
        """The status's failures happened under this spec and these settings.

        A retry request (`democtl retry`, an annotation of the demo) changes the spec hash.
        A status that recorded no settings hash is taken as the same settings.
        """
        return status.specHash == demo.spec_hash() and status.settingsHash in (
            None,
            self.settings_hash,
        )
