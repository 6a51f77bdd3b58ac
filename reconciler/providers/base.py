"""The small Protocols every provider adapter implements, and the values they exchange.

Adapters know nothing of demos' TTLs, expiry or phases: they list, create, adopt
and delete resources that carry democtl's ownership mark, and convert vendor
errors into `ProviderError` at their edge. The planner imports only the value
types from here, never an adapter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from reconciler.marks import Owner

# --- errors ---------------------------------------------------------------------------


class ProviderError(Exception):
    """A provider call failed. `retryable` says whether a later attempt may succeed.

    The message carries the provider, the operation, the demo id and the upstream
    message, and never a token or password.
    """

    def __init__(
        self,
        provider: str,
        operation: str,
        message: str,
        *,
        demo_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.upstream_message = message
        self.demo_id = demo_id
        self.retryable = retryable
        self.retry_after = retry_after
        self.status_code = status_code
        where = f"{provider} {operation}" + (f" for {demo_id}" if demo_id else "")
        super().__init__(f"{where}: {message}")


class RateLimited(ProviderError):
    """The provider refused for rate limiting; leave the rest for a later cycle."""


# The longest Retry-After of a 429 that an adapter waits out inside the call: a wait that
# short is no blocked token (RFC 9110 10.2.3), and a request refused with 429 was not
# carried out. A longer one goes back to the loop as RateLimited.
SHORT_RETRY_AFTER = 1.0


class Conflict(ProviderError):
    """Something democtl does not own holds the name it needs: a human must resolve it.

    Retrying cannot help until then, and giving up for good would be wrong once they
    have; the message names the resource and what holds it.
    """


class NotReady(ProviderError):
    """The resource exists but cannot take this operation yet (e.g. a project still coming up)."""


# --- Supabase -------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    ref: str
    name: str
    status: str  # UNKNOWN, COMING_UP, ACTIVE_HEALTHY, INIT_FAILED, REMOVED, ...
    demo_id: str  # parsed from the managed name
    region: str = ""
    created_at: datetime | None = None

    @property
    def healthy(self) -> bool:
        return self.status == "ACTIVE_HEALTHY"

    @property
    def failed(self) -> bool:
        return self.status in TERMINAL_PROJECT_FAILURES

    @property
    def going_down(self) -> bool:
        """Deleted and on its way out: gone for every purpose but the listing."""
        return self.status == GOING_DOWN


GOING_DOWN = "GOING_DOWN"  # the status a project has between DELETE and its disappearance
TERMINAL_PROJECT_FAILURES = frozenset(
    {"INIT_FAILED", "REMOVED", "INACTIVE", "GOING_DOWN", "PAUSE_FAILED", "RESTORE_FAILED"}
)


@dataclass(frozen=True)
class ApiKeys:
    anon: str
    service_role: str = field(repr=False)


class SupabaseProvider(Protocol):
    def project_name(self, demo_id: str) -> str:
        """The deterministic, managed name of a demo's project (prefix, owner id, demo id)."""

    def list_projects(self) -> list[Project]:
        """Every project of the configured organisation named with this installation's mark."""

    def create_project(self, demo_id: str, db_pass: str) -> Project: ...

    def get_project(self, ref: str) -> Project | None: ...

    def is_healthy(self, ref: str) -> bool:
        """Status ACTIVE_HEALTHY and `/health` reports the services healthy."""

    def run_sql(self, ref: str, query: str) -> list[dict[str, object]]: ...

    def api_keys(self, ref: str) -> ApiKeys: ...

    def set_db_password(self, ref: str, password: str) -> None:
        """PATCH /v1/projects/{ref}/database/password.

        The password given at creation is never stored; whoever writes the Secret
        sets a fresh one first, so a crash between create and Secret leaks nothing.
        """

    def rename_project(self, ref: str, demo_id: str) -> None:
        """Give the project the managed name of `demo_id` (a demo or pool id); same ref."""

    def delete_project(self, ref: str) -> None:
        """Delete; a project already gone is success; one still coming up raises NotReady."""

    def project_url(self, ref: str) -> str:
        """The project's API URL (https://<ref>.supabase.co, or the emulator's)."""


# --- DNS ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsRecord:
    id: str
    name: str
    type: str
    content: str
    proxied: bool
    ttl: int
    comment: str
    demo_id: str | None  # parsed from the ownership comment; None when not ours


@dataclass(frozen=True)
class DesiredRecord:
    demo_id: str
    name: str
    type: str
    content: str
    proxied: bool


class DnsProvider(Protocol):
    def list_records(self) -> list[DnsRecord]:
        """Every record of the zone that carries this installation's ownership comment."""

    def ensure_records(self, demo_id: str, desired: list[DesiredRecord]) -> list[DnsRecord]:
        """Create or update one demo's records (adopting on 'already exists'), return them."""

    def delete_records(self, demo_id: str, records: list[DnsRecord]) -> None:
        """Delete the given managed records; a record already gone is success."""


# --- Kubernetes -----------------------------------------------------------------------

# On the credentials Secret: the project whose credentials it holds, so that a listing
# shows a Secret left stale (a crash, a restore, a hand edit) whatever the status file says.
SECRET_PROJECT_REF_ANNOTATION = "demos.splits.network/project-ref"  # noqa: S105 (a key name)
# Also on it, written in the same apply as the credentials (democtl writes the Secret after
# the migrations, the seed and the keys): what had been done to that project by then, as
# digests (`migrations_digest`, `seed_digest`), never a secret. A cycle that did not commit
# its progress (quiet history) learns it again from the listing, at no request of its own.
SECRET_MIGRATIONS_ANNOTATION = "demos.splits.network/migrations"  # noqa: S105 (a key name)
SECRET_SEED_ANNOTATION = "demos.splits.network/seed"  # noqa: S105 (a key name)


def migrations_digest(versions: Iterable[str]) -> str:
    """Names a set of applied migrations: equal digests, the same migrations."""
    text = "\n".join(sorted(set(versions)))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_digest(demo_type: str, size: str, company_name: str | None) -> str:
    """Names what a project was seeded with, without spelling out the company name."""
    text = "\n".join((demo_type, size, company_name or ""))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class NamespaceState:
    name: str
    demo_id: str | None
    phase: str  # Active | Terminating
    pods_ready: int = 0
    pods_expected: int = 0
    restarts: int = 0
    release_ready: bool = False
    release_message: str = ""
    secret_present: bool = False
    # the Secret's SECRET_PROJECT_REF_ANNOTATION; None when absent or not recorded
    secret_project_ref: str | None = None
    cpu_used: str = "0"
    memory_used: str = "0"
    pods_quota: int = 0
    # ResourceQuota hard limits and pod usage, for `status --live` and metrics.
    cpu_hard: str = "0"
    memory_hard: str = "0"
    pods_used: int = 0
    # (kept last: tests build this positionally)
    # The release used up its remediation retries (a HelmRelease Stalled with reason
    # RetriesExceeded; an Application whose sync failed after its retry limit): the GitOps
    # controller will not try again by itself. The value names this failure (generation,
    # message, time) so that democtl resets it once per failure; None otherwise.
    release_stalled: str | None = None
    # (namespace, name) of the HelmRelease or Application, for `reset_release`
    release_object: tuple[str, str] | None = None
    # the Secret's SECRET_MIGRATIONS_ANNOTATION and SECRET_SEED_ANNOTATION (None: absent),
    # and the two public values of its data, SUPABASE_URL and SUPABASE_ANON_KEY (the anon
    # key is the browser's key, in the status file anyway); never the other two
    secret_migrations: str | None = None
    secret_seed: str | None = None
    secret_url: str | None = None
    secret_anon_key: str | None = None

    @property
    def healthy(self) -> bool:
        return (
            self.phase == "Active"
            and self.pods_expected > 0
            and self.pods_ready >= self.pods_expected
            and self.release_ready
        )


@dataclass(frozen=True)
class NamespaceMeta:
    """Any namespace of the cluster, by name and labels: to see a name that is taken."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()

    def marked_for(self, demo_id: str, owner: Owner) -> bool:
        """Carries this installation's mark for this demo (so it is the demo's own, to adopt)."""
        return owner.label_demo(dict(self.labels)) == demo_id


class ClusterProvider(Protocol):
    def list_namespaces(self) -> list[NamespaceState]:
        """Every namespace with this installation's mark (managed-by, owner id), with its health."""

    def list_all_namespaces(self) -> list[NamespaceMeta]:
        """Every namespace of the cluster, marked or not: names and labels only, one listing."""

    def apply_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """Server-side apply of an Opaque Secret; the namespace must exist.

        `annotations` go on the Secret's metadata (democtl passes
        SECRET_PROJECT_REF_ANNOTATION, and the migrations and seed digests);
        `list_namespaces` reads them back, with SUPABASE_URL and SUPABASE_ANON_KEY.
        """

    def delete_secret(self, namespace: str, name: str) -> None: ...

    def reset_release(self, namespace: str, name: str, token: str) -> None:
        """Ask the GitOps controller to try a release that exhausted its retries again.

        Flux: annotate the HelmRelease with reconcile.fluxcd.io/requestedAt and
        reconcile.fluxcd.io/resetAt both set to `token` (helm-controller resets the
        failure counts when resetAt equals requestedAt and differs from the last one it
        handled). Argo CD: a hard refresh and a sync operation with retry on the
        Application. The same token twice is a no-op for the controller.
        """

    def node_allocatable(self) -> tuple[str, str]:
        """Sum of the nodes' allocatable cpu and memory, as Kubernetes quantities."""


# --- notices --------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A Slack-compatible message: `text` (the fallback and the notification's words) and
    Block Kit `blocks` (https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks)."""

    text: str
    blocks: tuple[Mapping[str, object], ...] = ()

    def payload(self) -> dict[str, object]:
        return {"text": self.text, "blocks": [dict(b) for b in self.blocks]}


class Notifier(Protocol):
    def post(self, message: Message) -> None:
        """POST the message to the webhook; raise ProviderError when it is not taken."""


# --- usage ------------------------------------------------------------------------------


class UsageReader(Protocol):
    def last_request(self, query: str, at: datetime) -> datetime | None:
        """Evaluate the PromQL `query` at `at`: the Unix time its one value holds, or None
        when the result is empty (no request within the query's window). Raises
        ProviderError when there is no answer to judge by."""


class HttpProber(Protocol):
    def probe(self, url: str) -> bool | None:
        """GET the URL (a demo's health endpoint): True on a 2xx answer, False on another
        answer or a refused connection (nothing listens), None when there was no answer to
        judge by (a timeout, a dropped connection, a 429)."""


# --- preflight (`democtl doctor`) ---------------------------------------------------------
# Read-only questions asked before the first real demo. Each adapter answers the ones of
# its service; none of them creates, changes or deletes anything.


@dataclass(frozen=True)
class Organization:
    """A Supabase organisation the token can see; `plan` is known once read by slug."""

    slug: str
    name: str
    plan: str | None = None  # free | pro | team | enterprise | platform


class SupabasePreflight(Protocol):
    def organizations(self) -> list[Organization]:
        """GET /v1/organizations: every organisation the token is a member of."""

    def organization(self, slug: str) -> Organization:
        """GET /v1/organizations/{slug}: the organisation with its plan."""

    def organization_project_count(self, slug: str) -> int:
        """How many projects the organisation holds (any name, any status)."""


@dataclass(frozen=True)
class CertificatePack:
    """An edge certificate pack of the zone: which hostnames it carries, and its state."""

    id: str
    type: str  # universal | advanced | ...
    status: str  # active | pending_validation | ...
    hosts: tuple[str, ...]

    @property
    def active(self) -> bool:
        return self.status == "active"


class DnsPreflight(Protocol):
    def verify_token(self) -> str:
        """GET /user/tokens/verify: the token's status (active, disabled, expired)."""

    def find_zone(self) -> str | None:
        """The configured zone's id, or None when no zone of that name is visible."""

    def can_read_records(self) -> bool:
        """The token may list the zone's DNS records (False on 403)."""

    def can_edit_records(self) -> bool:
        """The token may write the zone's DNS records, asked without changing any."""

    def certificate_packs(self) -> list[CertificatePack]:
        """GET /zones/{zone_id}/ssl/certificate_packs?status=all."""


@dataclass(frozen=True, order=True)
class Permission:
    """One verb on one resource kind (cluster-wide unless `namespace`), as RBAC grants it."""

    group: str  # "" for the core group
    resource: str
    verb: str
    namespace: str | None = None

    def describe(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else " (cluster-wide)"
        kind = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {kind}{where}"


class ClusterPreflight(Protocol):
    def server_version(self) -> str:
        """GET /version: the API server's gitVersion."""

    def can_i(self, permission: Permission) -> bool:
        """A SelfSubjectAccessReview of one permission: whether it is granted."""

    def crd_installed(self, name: str) -> bool:
        """The CustomResourceDefinition `name` exists (e.g. helmreleases.helm.toolkit.fluxcd.io)."""

    def namespace_exists(self, name: str) -> bool: ...
