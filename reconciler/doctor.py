"""`democtl doctor`: what will fail against the real services, found before the first demo.

Owns the checks (like `flux check --pre`): each asks one read-only question through the
preflight Protocols of `providers.base` (or the git remote's answers from gitstate) and
becomes one `Check`: its name, whether it passed, the problem, and what to do about it.
Deciding is here; asking is the adapters'; printing is the CLI's. No I/O of its own, no
clock. A failed question (a refused token, a timeout) is a failed check, never a crash,
and the checks that depend on it are not asked. May import the settings model, the
certificate rule (`certs`) and the provider value types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from reconciler.certs import SAMPLE_ID, uncovered_hosts
from reconciler.model import Settings
from reconciler.providers.base import (
    ClusterPreflight,
    DnsPreflight,
    Permission,
    ProviderError,
    SupabasePreflight,
)

# V1CreateProjectBody in the Management API spec (supabase/cli packages/api/src/generated/
# openapi.json): region_selection.code (type "specific") and desired_instance_size enums.
SUPABASE_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-east-1", "ap-southeast-1",
    "ap-northeast-1", "ap-northeast-2", "ap-southeast-2", "eu-west-1", "eu-west-2",
    "eu-west-3", "eu-north-1", "eu-central-1", "eu-central-2", "ca-central-1", "ap-south-1",
    "sa-east-1",
)  # fmt: skip
SUPABASE_SIZES = (
    "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge",
    "12xlarge", "16xlarge", "24xlarge", "24xlarge_optimized_memory", "24xlarge_optimized_cpu",
    "24xlarge_high_memory", "48xlarge", "48xlarge_optimized_memory", "48xlarge_optimized_cpu",
    "48xlarge_high_memory",
)  # fmt: skip
# Free Plan: 2 active free projects (supabase.com/pricing). The limit is each member's,
# across their free organisations ("The organization has members who have exceeded their
# free project limits ... (Limit: 2 free projects)", supabase/supabase#42593), so the
# organisation's own count is the best case. Only Pro and above choose a compute size at
# creation (supabase/supabase#21292, "Pro+ users can choose compute size").
FREE_PLAN_PROJECTS = 2
RBAC_FILE = "examples/kubernetes/democtl-rbac.yaml"


@dataclass(frozen=True)
class Check:
    """One line of doctor's report: `ok`, else the problem and what to do."""

    name: str
    ok: bool
    problem: str = ""
    advice: str = ""
    detail: str = ""  # what was found, for a check that passed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RemoteAnswer(Protocol):
    """One of gitstate's answers about the remote (`gitstate.RemoteCheck`)."""

    @property
    def name(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class Preflight:
    """What doctor asks, per service: an adapter, or why none could be made (a str)."""

    supabase: SupabasePreflight | str
    dns: DnsPreflight | str
    cluster: ClusterPreflight | str
    git: Callable[[], Sequence[RemoteAnswer]] | str
    permissions: Sequence[Permission] = ()  # what the cluster must grant
    crds: Sequence[str] = ()  # what the GitOps flavour needs installed


def run_checks(settings: Settings, preflight: Preflight) -> list[Check]:
    """Every check, in a fixed order: Supabase, Cloudflare, Kubernetes, git."""
    return [
        *_supabase(settings, preflight.supabase),
        *_cloudflare(settings, preflight.dns),
        *_kubernetes(settings, preflight),
        *_git(preflight.git),
    ]


def _failed(name: str, exc: ProviderError, advice: str) -> Check:
    return Check(name, False, str(exc), advice)


# --- Supabase ---------------------------------------------------------------------------

_SUPABASE_CREDENTIAL_HELP = (
    "create a personal access token (supabase.com/dashboard/account/tokens) of a member of "
    "the organisation and set SUPABASE_ACCESS_TOKEN"
)


def _supabase(settings: Settings, api: SupabasePreflight | str) -> list[Check]:
    sb = settings.supabase
    # the region is the settings' alone: said even when the token does not work
    region = (
        Check("supabase.region", True, detail=f"{sb.region} is a region the API accepts")
        if sb.region in SUPABASE_REGIONS
        else Check(
            "supabase.region",
            False,
            f"supabase.region {sb.region!r} is not a region the API accepts",
            f"set supabase.region to one of {', '.join(SUPABASE_REGIONS)}",
        )
    )
    if isinstance(api, str):
        return [Check("supabase.token", False, api, _SUPABASE_CREDENTIAL_HELP), region]
    try:
        organizations = api.organizations()
    except ProviderError as exc:
        return [_failed("supabase.token", exc, _SUPABASE_CREDENTIAL_HELP), region]
    token = Check("supabase.token", True, detail=f"sees {len(organizations)} organisation(s)")
    checks = [token, region]
    slugs = [o.slug for o in organizations]
    if sb.organization not in slugs:
        by_name = [o.slug for o in organizations if o.name == sb.organization]
        hint = f" (that is the name of {by_name[0]!r}: use the slug)" if by_name else ""
        checks.append(
            Check(
                "supabase.organization",
                False,
                f"supabase.organization {sb.organization!r} is not an organisation of the "
                f"token{hint}; it sees: {', '.join(slugs) or 'none'}",
                "set supabase.organization to the slug (dashboard: Organization settings > "
                "General), or use a token of one of its members",
            )
        )
        return checks
    try:
        org = api.organization(sb.organization)
        count = api.organization_project_count(sb.organization)
    except ProviderError as exc:
        checks.append(_failed("supabase.organization", exc, _SUPABASE_CREDENTIAL_HELP))
        return checks
    plan = org.plan or "unknown"
    checks.append(
        Check("supabase.organization", True, detail=f"{sb.organization} exists, plan {plan}")
    )
    checks.append(_size_check(sb.size, plan))
    # the warm pool's members are Supabase projects like the demos': they count here
    pool = sb.warmPool.size if sb.warmPool else 0
    checks.append(_projects_check(count, plan, settings.capacity.maxConcurrentDemos, pool))
    return checks


def _size_check(size: str, plan: str) -> Check:
    if size not in SUPABASE_SIZES:
        return Check(
            "supabase.size",
            False,
            f"supabase.size {size!r} is not an instance size the API accepts",
            f"set supabase.size to one of {', '.join(SUPABASE_SIZES)}",
        )
    if plan == "free":
        return Check(
            "supabase.size",
            False,
            f"the organisation is on the free plan, which cannot choose a compute size "
            f"(supabase.size is {size!r}): a create that asks for one is not honoured",
            "upgrade the organisation to a paid plan (Pro or above), or use another "
            "organisation that has one",
        )
    return Check("supabase.size", True, detail=f"{size} may be chosen on the {plan} plan")


def _projects_check(count: int, plan: str, demos: int, pool: int = 0) -> Check:
    if plan != "free":
        return Check("supabase.projects", True, detail=f"the organisation holds {count} project(s)")
    room = max(0, FREE_PLAN_PROJECTS - count)
    text = (
        f"the free plan allows {FREE_PLAN_PROJECTS} active projects and the organisation holds "
        f"{count}: democtl may create {room}"
    )
    caveat = " (at most: the limit counts each member's free projects elsewhere too)"
    if room >= demos + pool:
        return Check("supabase.projects", True, detail=text + caveat)
    wanted = f"capacity.maxConcurrentDemos ({demos})"
    if pool:
        wanted += f" plus supabase.warmPool.size ({pool})"
    return Check(
        "supabase.projects",
        False,
        f"{text}, fewer than {wanted}{caveat}",
        f"upgrade the organisation, or set capacity.maxConcurrentDemos to {max(room - pool, 0)}"
        + (" or shrink the warm pool" if pool else ""),
    )


# --- Cloudflare -------------------------------------------------------------------------

_CLOUDFLARE_CREDENTIAL_HELP = (
    "create an API token (dashboard: My Profile > API Tokens) with Zone > Zone > Read, "
    "Zone > DNS > Edit and Zone > SSL and Certificates > Read on the zone, and set "
    "CLOUDFLARE_API_TOKEN"
)


def _cloudflare(settings: Settings, api: DnsPreflight | str) -> list[Check]:
    cf = settings.cloudflare
    if isinstance(api, str):
        return [Check("cloudflare.token", False, api, _CLOUDFLARE_CREDENTIAL_HELP)]
    try:
        status = api.verify_token()
    except ProviderError as exc:
        return [_failed("cloudflare.token", exc, _CLOUDFLARE_CREDENTIAL_HELP)]
    if status != "active":
        return [
            Check("cloudflare.token", False, f"the token is {status}", _CLOUDFLARE_CREDENTIAL_HELP)
        ]
    checks = [Check("cloudflare.token", True, detail="the token is active")]
    try:
        zone_id = api.find_zone()
    except ProviderError as exc:
        return [*checks, _failed("cloudflare.zone", exc, _CLOUDFLARE_CREDENTIAL_HELP)]
    if zone_id is None:
        checks.append(
            Check(
                "cloudflare.zone",
                False,
                f"no zone {cf.zone!r} is visible to the token"
                + (f" with the id {cf.zoneId!r}" if cf.zoneId else ""),
                "check cloudflare.zone (the zone's name, e.g. example.com)"
                + (" and cloudflare.zoneId" if cf.zoneId else "")
                + ", and give the token Zone > Zone > Read on it",
            )
        )
        return checks
    checks.append(Check("cloudflare.zone", True, detail=f"{cf.zone} ({zone_id})"))
    try:
        read, edit = api.can_read_records(), api.can_edit_records()
    except ProviderError as exc:
        checks.append(_failed("cloudflare.dns", exc, _CLOUDFLARE_CREDENTIAL_HELP))
    else:
        missing = [what for what, ok in (("read", read), ("edit", edit)) if not ok]
        checks.append(
            Check("cloudflare.dns", True, detail="the token may read and edit DNS records")
            if not missing
            else Check(
                "cloudflare.dns",
                False,
                f"the token may not {' or '.join(missing)} the DNS records of {cf.zone}",
                f"give the token Zone > DNS > Edit on {cf.zone}",
            )
        )
    checks.append(_certificates(settings, api))
    return checks


def _certificates(settings: Settings, api: DnsPreflight) -> Check:
    cf = settings.cloudflare
    try:
        packs = api.certificate_packs()
    except ProviderError as exc:
        return _failed(
            "cloudflare.certificates",
            exc,
            f"give the token Zone > SSL and Certificates > Read on {cf.zone}",
        )
    active = sorted({host for pack in packs if pack.active for host in pack.hosts})
    found = uncovered_hosts(
        settings.hosts(SAMPLE_ID), cf.zone, proxied=cf.proxied, certificates=active, universal=False
    )
    if not found:
        if not cf.proxied:
            return Check(
                "cloudflare.certificates",
                True,
                detail="DNS-only records: the cluster serves the certificates",
            )
        return Check(
            "cloudflare.certificates",
            True,
            detail=f"every demo hostname is covered by an active edge certificate "
            f"({', '.join(active)})",
        )
    pending = sorted(f"{p.type} {p.id} ({p.status})" for p in packs if not p.active)
    parent = found[0].hostname.partition(".")[2]
    return Check(
        "cloudflare.certificates",
        False,
        "; ".join(f"urls.{u.kind}: {u.hostname} {u.reason.partition(':')[0]}" for u in found)
        + f" (active certificates cover: {', '.join(active) or 'nothing'}"
        + (f"; not active: {', '.join(pending)})" if pending else ")"),
        f"use one-level names such as '{{id}}-portal.{{domain}}' with domain {cf.zone!r}, "
        f"order an Advanced certificate for '*.{parent}' and list it under "
        "cloudflare.certificates, or set cloudflare.proxied: false and issue certificates "
        "in the cluster",
    )


# --- Kubernetes -------------------------------------------------------------------------

_KUBE_ADVICE = (
    "check KUBECONFIG (or the in-cluster service account) and that the API server is reachable"
)


def _kubernetes(settings: Settings, preflight: Preflight) -> list[Check]:
    api = preflight.cluster
    if isinstance(api, str):
        return [Check("kubernetes.api", False, api, _KUBE_ADVICE)]
    try:
        version = api.server_version()
    except ProviderError as exc:
        return [_failed("kubernetes.api", exc, _KUBE_ADVICE)]
    checks = [Check("kubernetes.api", True, detail=f"reachable, {version}")]
    try:
        denied = [p for p in preflight.permissions if not api.can_i(p)]
    except ProviderError as exc:
        checks.append(_failed("kubernetes.permissions", exc, _KUBE_ADVICE))
    else:
        checks.append(
            Check(
                "kubernetes.permissions",
                True,
                detail=f"all {len(preflight.permissions)} granted",
            )
            if not denied
            else Check(
                "kubernetes.permissions",
                False,
                f"not granted: {', '.join(p.describe() for p in denied)}",
                f"apply {RBAC_FILE} (kubectl apply -f) and bind it to democtl's identity",
            )
        )
    flavour = "Flux" if settings.gitops == "flux" else "Argo CD"
    try:
        missing = [name for name in preflight.crds if not api.crd_installed(name)]
    except ProviderError as exc:
        checks.append(_failed("kubernetes.crds", exc, _KUBE_ADVICE))
    else:
        install = (
            "flux install (or flux bootstrap)"
            if settings.gitops == "flux"
            else ("kubectl apply -n argocd -f the Argo CD install manifest")
        )
        checks.append(
            Check("kubernetes.crds", True, detail=f"the {flavour} CRDs are installed")
            if not missing
            else Check(
                "kubernetes.crds",
                False,
                f"gitops is {settings.gitops} but these CRDs are missing: {', '.join(missing)}",
                f"install {flavour} ({install}), or set gitops to the flavour the cluster runs",
            )
        )
    namespace = settings.kubernetes.ingressNamespace
    try:
        exists = api.namespace_exists(namespace)
    except ProviderError as exc:
        checks.append(_failed("kubernetes.ingress", exc, _KUBE_ADVICE))
    else:
        checks.append(
            Check("kubernetes.ingress", True, detail=f"namespace {namespace} exists")
            if exists
            else Check(
                "kubernetes.ingress",
                False,
                f"the ingress namespace {namespace!r} does not exist",
                "install the ingress controller, or set kubernetes.ingressNamespace to its "
                "namespace",
            )
        )
    return checks


# --- git --------------------------------------------------------------------------------

_GIT_ADVICE = {
    "remote": "check the remote's URL and democtl's credentials (GITHUB_TOKEN, a deploy key)",
    "branch": "set git.branch in reconciler.yaml to the branch democtl reconciles, or push it",
    "lock": "give democtl push access to refs/democtl/lock (a deploy key with write access; "
    "a ruleset protecting refs must let it update that ref)",
}


def _git(ask: Callable[[], Sequence[RemoteAnswer]] | str) -> list[Check]:
    if isinstance(ask, str):
        return [Check("git.remote", False, ask, _GIT_ADVICE["remote"])]
    return [
        Check(f"git.{a.name}", True, detail=a.detail)
        if a.ok
        else Check(f"git.{a.name}", False, a.detail, _GIT_ADVICE.get(a.name, ""))
        for a in ask()
    ]
