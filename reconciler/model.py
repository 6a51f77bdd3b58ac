"""The data of democtl: the demo file, the reconciler settings and the status file.

Owns the pydantic models and the rules a single document must satisfy on its own.
Rules that need more than one document (file name, duplicates, profile maximum,
capacity, history) live in `validate.py`. Imports nothing from the rest of the
package and does no I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from reconciler.marks import DEFAULT_OWNER_ID, Owner, owner_id_problem
from reconciler.names import DEMO_ID_MAX, DEMO_ID_PATTERN, DemoType

API_VERSION = "demos.splits.network/v1"
STATUS_SCHEMA_VERSION = 1


_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
# Far beyond any profile's maximum, yet small enough that `start + ttl` never overflows.
DURATION_MAX = timedelta(days=366)
# Characters that could confuse a later stage: control characters (newlines
# included) and template delimiters. Realistic punctuation stays valid.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TEMPLATE_DELIMITERS = ("{{", "}}", "{%", "%}", "{#", "#}")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SUBDOMAIN_PART = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
# Kubernetes label rules as patterns, so the JSON schema carries them to editors too.
LABEL_KEY_PATTERN = rf"^({_SUBDOMAIN_PART}(\.{_SUBDOMAIN_PART})*/)?{_LABEL_PART}$"
LABEL_VALUE_PATTERN = rf"^({_LABEL_PART})?$"
COLOR_PATTERN = r"^#[0-9a-fA-F]{6}$"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def parse_duration(text: str) -> timedelta:
    """Parse `30s`, `90m`, `2h`, `1d`, `1h30m` into a positive timedelta."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not text.strip() or not any(match.groupdict().values()):
        raise ValueError(f"{text!r} is not a duration like 90m, 2h, 1d or 1h30m")
    parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
    try:
        delta = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    except OverflowError:
        delta = DURATION_MAX + timedelta(days=1)
    if delta <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    if delta > DURATION_MAX:
        raise ValueError(f"{text!r} is longer than {DURATION_MAX.days}d")
    return delta


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, for messages: 1d2h, 90m -> 1h30m."""
    minutes = int(delta.total_seconds() // 60)
    negative = minutes < 0
    minutes = abs(minutes)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = (
        "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (mins, "m")) if n) or "0m"
    )
    return f"-{text}" if negative else text


def _safe_text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain newlines or control characters")
    for delimiter in _TEMPLATE_DELIMITERS:
        if delimiter in value:
            raise ValueError(f"must not contain the template delimiter {delimiter!r}")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


def _duration_text(value: str) -> str:
    parse_duration(value)
    return value


def _span(text: str) -> timedelta:
    """Like parse_duration, but `0` and `0m` mean no time at all."""
    return timedelta(0) if text.strip() in ("0", "0m") else parse_duration(text)


def _span_text(value: str) -> str:
    _span(value)
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must be RFC 3339 with a time zone, e.g. 2026-12-01T18:00:00Z")
    return value


def _https_url(value: str) -> str:
    if not value.startswith("https://") or len(value) <= len("https://"):
        raise ValueError("must be an https:// URL")
    if _CONTROL.search(value) or " " in value:
        raise ValueError("must not contain spaces or control characters")
    for delimiter in _TEMPLATE_DELIMITERS:
        if delimiter in value:
            raise ValueError(f"must not contain the template delimiter {delimiter!r}")
    return value


SafeText = Annotated[str, StringConstraints(min_length=1), AfterValidator(_safe_text)]


def _number_as_text(value: object) -> object:
    # `ttl: 0` or `ttl: 2` parse as numbers; report them with the duration rule
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("must be a duration like 90m, 2h, 1d or 1h30m")
    return str(value) if isinstance(value, int | float) else value


Duration = Annotated[
    str,
    BeforeValidator(_number_as_text),
    AfterValidator(_duration_text),
    # editors see the shape too; the validator above also refuses zero and huge values
    Field(
        json_schema_extra={"pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$", "examples": ["90m", "2h"]}
    ),
]
# A duration that may also be none at all ("0m"), for a minimum that can be switched off.
DurationOrZero = Annotated[
    str,
    BeforeValidator(_number_as_text),
    AfterValidator(_span_text),
    Field(json_schema_extra={"pattern": r"^0m?$|^(\d+d)?(\d+h)?(\d+m)?$"}),
]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
DemoId = Annotated[
    str, StringConstraints(pattern=DEMO_ID_PATTERN, min_length=6, max_length=DEMO_ID_MAX)
]


class StrictModel(BaseModel):
    """Unknown fields are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SeedSize(StrEnum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes label rules: optional DNS-subdomain prefix, name <= 63, value <= 63."""
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            raise ValueError(f"label key {key!r}: prefix must be a DNS subdomain")
        if not name or len(name) > 63 or not _LABEL_NAME.match(name):
            raise ValueError(
                f"label key {key!r}: name must be 1-63 characters of [A-Za-z0-9-_.], "
                "starting and ending alphanumeric"
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_NAME.match(value):
            raise ValueError(
                f"label {key!r}: value {value!r} must be at most 63 characters of "
                "[A-Za-z0-9-_.], starting and ending alphanumeric"
            )
    return labels


# Kubernetes keeps kubernetes.io and k8s.io (and their subdomains) for itself, and democtl
# its own domain: a demo label under one could pose as the labels that network policies
# and the reconciler select on (kubernetes.io/metadata.name, demos.splits.network/id).
RESERVED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io", "demos.splits.network")


def reserved_label_key(key: str) -> bool:
    """True for a label key whose prefix is a reserved domain or a subdomain of one."""
    prefix = key.rpartition("/")[0]
    return any(prefix == d or prefix.endswith("." + d) for d in RESERVED_LABEL_DOMAINS)


def _unreserved_label_key(key: str) -> str:
    if reserved_label_key(key):
        raise ValueError(
            f"label key {key!r}: the prefix {key.rpartition('/')[0]!r} is reserved for "
            f"Kubernetes and democtl ({', '.join(RESERVED_LABEL_DOMAINS)} and their "
            "subdomains); use a prefix of your own or none"
        )
    return key


LabelKey = Annotated[
    str,
    StringConstraints(max_length=253 + 1 + 63, pattern=LABEL_KEY_PATTERN),
    AfterValidator(_unreserved_label_key),
]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]


# `democtl retry ID` writes the time of the request here. Like Flux's
# reconcile.fluxcd.io/requestedAt, it is an annotation of the desired state: a new value
# changes the demo's spec hash, which is a new cause, so a failed demo starts again.
RETRY_ANNOTATION = "demos.splits.network/retry"
_OUR_ANNOTATIONS = (RETRY_ANNOTATION,)


def _annotation_key(key: str) -> str:
    if reserved_label_key(key) and key not in _OUR_ANNOTATIONS:
        raise ValueError(
            f"annotation key {key!r}: the prefix {key.rpartition('/')[0]!r} is reserved; "
            f"democtl reads only {', '.join(_OUR_ANNOTATIONS)} there"
        )
    return key


AnnotationKey = Annotated[
    str,
    StringConstraints(max_length=253 + 1 + 63, pattern=LABEL_KEY_PATTERN),
    AfterValidator(_annotation_key),
]
AnnotationValue = Annotated[str, StringConstraints(max_length=256), AfterValidator(_safe_text)]


class DemoMetadata(StrictModel):
    name: DemoId
    annotations: Annotated[
        dict[AnnotationKey, AnnotationValue],
        Field(max_length=16, json_schema_extra={"additionalProperties": False}),
    ] = Field(default_factory=dict)
    labels: Annotated[
        dict[LabelKey, LabelValue],
        # pydantic renders key patterns as patternProperties; this makes other keys errors
        Field(max_length=16, json_schema_extra={"additionalProperties": False}),
        AfterValidator(validate_labels),
    ] = Field(default_factory=dict)


class Branding(StrictModel):
    companyName: Annotated[SafeText, StringConstraints(max_length=80)] | None = None
    primaryColor: Annotated[str, StringConstraints(pattern=COLOR_PATTERN)] | None = None
    logoUrl: (
        Annotated[
            str,
            StringConstraints(max_length=2048),
            AfterValidator(_https_url),
            Field(json_schema_extra={"pattern": "^https://[^\\s]+$"}),
        ]
        | None
    ) = None


class Seed(StrictModel):
    size: SeedSize = SeedSize.SMALL


class DemoSpec(StrictModel):
    type: DemoType
    profile: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,32}$")] = "small"
    owner: Annotated[SafeText, StringConstraints(max_length=254)]
    ttl: Duration | None = None
    expiresAt: AwareDatetime | None = None
    branding: Branding | None = None
    seed: Seed = Field(default_factory=Seed)

    @model_validator(mode="after")
    def _one_expiry(self) -> DemoSpec:
        if self.ttl is not None and self.expiresAt is not None:
            raise ValueError("set ttl or expiresAt, not both")
        return self


class Demo(StrictModel):
    apiVersion: Literal["demos.splits.network/v1"]
    kind: Literal["Demo"]
    metadata: DemoMetadata
    spec: DemoSpec

    @property
    def id(self) -> str:
        return self.metadata.name

    def spec_hash(self) -> str:
        """A short, stable hash of the desired state, recorded in the status file."""
        data = self.model_dump(mode="json")
        if not data["metadata"]["annotations"]:
            del data["metadata"]["annotations"]  # no annotations: the hash it always had
        payload = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- settings ---------------------------------------------------------------------------


def _quantity(value: str | int | float) -> str:
    from reconciler.quantity import parse_quantity

    parse_quantity(str(value))
    return str(value)


Quantity = Annotated[str | int | float, AfterValidator(_quantity)]


class Profile(StrictModel):
    cpu: Quantity
    memory: Quantity
    pods: Annotated[int, Field(gt=0, le=1000)]
    defaultTtl: Duration
    maxTtl: Duration
    # render a prometheus-operator ServiceMonitor for the platform release (and let the
    # monitoring namespace scrape it): for profiles whose numbers matter, load testing
    serviceMonitor: bool = False
    # expire a demo that served no request for this long (`usage:` tells when it last did)
    idleAfter: Duration | None = None

    @model_validator(mode="after")
    def _default_within_max(self) -> Profile:
        if parse_duration(self.defaultTtl) > parse_duration(self.maxTtl):
            raise ValueError("defaultTtl must not exceed maxTtl")
        return self

    @property
    def cpu_cores(self) -> Decimal:
        from reconciler.quantity import parse_quantity

        return parse_quantity(str(self.cpu))

    @property
    def memory_bytes(self) -> Decimal:
        from reconciler.quantity import parse_quantity

        return parse_quantity(str(self.memory))


class Capacity(StrictModel):
    totalCpu: Quantity
    totalMemory: Quantity
    reservedForProduction: Annotated[float, Field(ge=0, lt=100)] = 30
    maxConcurrentDemos: Annotated[int, Field(ge=0)] = 20


class Urls(StrictModel):
    portal: str = "{id}-portal.{domain}"
    candidate: str = "{id}-candidate.{domain}"
    api: str = "{id}-api.{domain}"

    @field_validator("portal", "candidate", "api")
    @classmethod
    def _has_id(cls, value: str) -> str:
        if "{id}" not in value:
            raise ValueError("URL pattern must contain {id}")
        try:
            value.format(id="demo-x", domain="example.com")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"URL pattern may only use {{id}} and {{domain}}: {exc}") from exc
        return value


class Chart(StrictModel):
    repository: str
    name: str
    version: str
    # The Secret (in each demo namespace for Flux) holding the registry credentials of a
    # private chart registry: Flux's OCIRepository/HelmRepository `spec.secretRef`. Argo CD
    # finds its repository credential Secret by URL (label argocd.argoproj.io/secret-type:
    # repository in its own namespace), so under Argo this only documents the name.
    pullSecret: (
        Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")] | None
    ) = None


class WarmPool(StrictModel):
    """Projects kept created, healthy and migrated (no demo data) for new demos to claim."""

    size: Annotated[int, Field(ge=0, le=20)]
    maxAgeHours: Annotated[float, Field(gt=0, le=24 * 30)] = 24
    # what an idle member costs per hour (Supabase compute: Micro is $0.01344/hour,
    # https://supabase.com/docs/guides/platform/compute-and-disk): for the plan's cost line
    pricePerProjectHour: Annotated[float, Field(ge=0)] = 0.01344


class SupabaseSettings(StrictModel):
    organization: str
    region: str = "us-east-1"
    size: str = "micro"
    projectPrefix: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,20}$")] = (
        "democtl-"
    )
    apiUrl: str = "https://api.supabase.com"
    provisionTimeout: Duration = "10m"
    warmPool: WarmPool | None = None


class CloudflareSettings(StrictModel):
    zone: str
    zoneId: str | None = None
    target: str
    recordType: Literal["CNAME", "A", "AAAA"] = "CNAME"
    proxied: bool = True
    # Names on edge certificates beyond Universal SSL's (the zone and *.zone), such as an
    # Advanced certificate for "*.portal.example.com"; proxied hostnames must be covered.
    certificates: list[str] = Field(default_factory=list)
    apiUrl: str | None = None


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"not a CIDR block (address/prefix, host bits zero): {exc}") from None


Cidr = Annotated[str, AfterValidator(_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]
_LABEL_KEY = r"^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$"
_LABEL_VALUE = r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$"
LabelMap = dict[
    Annotated[str, StringConstraints(pattern=_LABEL_KEY)],
    Annotated[str, StringConstraints(pattern=_LABEL_VALUE)],
]


class DnsPeer(StrictModel):
    """Pods that answer DNS: in the namespace named, with these labels."""

    namespace: str = "kube-system"
    podLabels: LabelMap = Field(default_factory=lambda: {"k8s-app": "kube-dns"})


class DnsEgress(StrictModel):
    """Where demo pods may send DNS (UDP and TCP 53). The default covers the cluster DNS
    pods (kube-dns / CoreDNS carry k8s-app: kube-dns on GKE, EKS, AKS and kubeadm) and
    NodeLocal DNSCache's link-local address 169.254.20.10, which the cache answers on from
    every node when it is enabled (GKE NodeLocal DNSCache, EKS and AKS add-on guides)."""

    selectors: list[DnsPeer] = Field(default_factory=lambda: [DnsPeer()])
    cidrs: list[Cidr] = Field(default_factory=lambda: ["169.254.20.10/32"])


class SupabaseEgress(StrictModel):
    """Where demo pods may reach Supabase (and other public HTTPS APIs).

    Supabase's direct database host (db.<ref>.supabase.co) resolves to IPv6 only; its
    pooler, Supavisor (<region>.pooler.supabase.com, 5432 session / 6543 transaction), is
    IPv4 (https://supabase.com/docs/guides/database/connecting-to-postgres). An IPv4-only
    cluster must use the pooler string; `ipv6` opens the direct host on a dual-stack one.
    Private ranges are always excepted from a block that contains them (other demos' pods).
    """

    ipv4: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"])
    ipv6: list[Cidr] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=lambda: [443, 5432, 6543])

    @field_validator("ipv4")
    @classmethod
    def _v4(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if ipaddress.ip_network(c).version != 4]
        if bad:
            raise ValueError(f"not IPv4 blocks: {', '.join(bad)}")
        return value

    @field_validator("ipv6")
    @classmethod
    def _v6(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if ipaddress.ip_network(c).version != 6]
        if bad:
            raise ValueError(f"not IPv6 blocks: {', '.join(bad)}")
        return value


class NetworkPolicySettings(StrictModel):
    dns: DnsEgress = Field(default_factory=DnsEgress)
    supabase: SupabaseEgress = Field(default_factory=SupabaseEgress)


class KubernetesSettings(StrictModel):
    secretName: str = "supabase-credentials"
    networkPolicy: NetworkPolicySettings = Field(default_factory=NetworkPolicySettings)
    # Which pods health counts for a demo: every pod of its namespace (the namespace IS the
    # demo), or only those carrying demos.splits.network/id, for a chart that copies the
    # label into its pod templates and shares the namespace with other pods.
    podSelector: Literal["namespace", "label"] = "namespace"
    ingressNamespace: str = "ingress-nginx"
    ingressClass: str = "nginx"
    # where Prometheus runs: a profile with serviceMonitor lets it reach the metrics port
    monitoringNamespace: str = "monitoring"
    fluxNamespace: str = "flux-system"
    argoNamespace: str = "argocd"
    # democtl's own client-side flow control toward the API server (client-go's token
    # bucket). client-go's 5 QPS / burst 10 are a default, not the server's limit: the
    # server's API Priority and Fairness is, and it answers 429 with Retry-After, which
    # democtl honours. 50 / 300 are what Flux's controllers run with (--kube-api-qps,
    # --kube-api-burst) on the clusters democtl writes for.
    clientQps: Annotated[float, Field(gt=0, le=1000)] = 50.0
    clientBurst: Annotated[int, Field(ge=1, le=10000)] = 300


class GitSettings(StrictModel):
    branch: str = "main"
    committerName: str = "democtl"
    committerEmail: str = "democtl@localhost"
    # the writer lock's lease on the real clock, renewed while a cycle runs: short, so
    # that a killed run on another host blocks the next one for one lease at most
    lockTtl: Duration = "1m"


class SafetySettings(StrictModel):
    massDeleteShare: Annotated[float, Field(gt=0, le=1)] = 0.5
    massDeleteMinimum: Annotated[int, Field(ge=1)] = 3
    orphanGracePeriod: Duration = "1h"
    maxAttempts: Annotated[int, Field(ge=1)] = 5
    # The pause after a failed attempt: retryDelay, doubling with each attempt, at most
    # retryMaxDelay, less up to half of it spread by demo (see status.next_attempt_at).
    retryDelay: Duration = "1m"
    retryMaxDelay: Duration = "30m"


class HealthSettings(StrictModel):
    """When a live demo's failing health checks make it degraded (Kubernetes probes'
    failureThreshold, plus a minimum span so that a burst of quick cycles is not enough).

    A check marks a ready demo degraded once it has answered unhealthy `failureThreshold`
    times in a row over at least `failureDuration` (from its first unhealthy answer). A
    call that got no answer (timeout, dropped connection, 429, a failed listing) is not
    an answer: it neither counts nor resets. One healthy answer ends a run of failures.
    """

    failureThreshold: Annotated[int, Field(ge=1, le=100)] = 3
    failureDuration: DurationOrZero = "2m"

    @property
    def failure_span(self) -> timedelta:
        return _span(self.failureDuration)


def _any_http_url(value: str) -> str:
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if _CONTROL.search(value) or " " in value:
        raise ValueError("must not contain spaces or control characters")
    return value


def webhook_url(value: str) -> str:
    """https://, or http:// to this machine only (a relay or a Prometheus beside the
    reconciler, a test)."""
    parsed = urlsplit(value)
    local = parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parsed.scheme == "https" or local) or not parsed.hostname:
        raise ValueError("must be an https:// URL (http:// only to 127.0.0.1 or localhost)")
    if _CONTROL.search(value) or " " in value:
        raise ValueError("must not contain spaces or control characters")
    return value


# ingress-nginx's request counter: the last minute in `$window` in which the demo's
# namespace served a request, as a Unix time (empty when it served none). A subquery
# (https://prometheus.io/docs/prometheus/latest/querying/basics/#subquery).
DEFAULT_USAGE_QUERY = (
    "max(last_over_time(timestamp(increase("
    'nginx_ingress_controller_requests{namespace="$namespace"}[1m]) > 0)[$window:1m]))'
)


class UsageSettings(StrictModel):
    """`usage:`: where a demo's last request is read from (the Prometheus HTTP API).

    `query` is PromQL with `$namespace`, `$host` (the portal's) and `$window` (the
    profile's idleAfter, else 1d) put in; it must give the Unix time of the last
    request, and nothing when there was none within the window.
    """

    # http:// too: Prometheus is usually reached in the cluster (http://prometheus.monitoring:9090)
    prometheusUrl: Annotated[str, AfterValidator(_any_http_url)]
    query: Annotated[str, StringConstraints(min_length=1)] = DEFAULT_USAGE_QUERY


class NoticeSettings(StrictModel):
    """`notices:`: a Slack-compatible incoming webhook told when a demo is ready, about to
    expire and removed. The URL is a secret (whoever holds it may post to the channel), so
    `webhookEnv` names an environment variable holding it; `webhook` puts it in the file."""

    webhook: Annotated[str, AfterValidator(webhook_url)] | None = Field(default=None, repr=False)
    webhookEnv: Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None
    beforeExpiry: Duration = "30m"

    @model_validator(mode="after")
    def _one_source(self) -> NoticeSettings:
        if (self.webhook is None) == (self.webhookEnv is None):
            raise ValueError("give exactly one of webhook (a URL) and webhookEnv (a variable name)")
        return self


class Settings(StrictModel):
    apiVersion: Literal["demos.splits.network/v1"]
    kind: Literal["ReconcilerSettings"]
    domain: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")]
    urls: Urls = Field(default_factory=Urls)
    gitops: Literal["flux", "argo"] = "flux"
    chart: Chart
    profiles: dict[str, Profile]
    capacity: Capacity
    supabase: SupabaseSettings
    cloudflare: CloudflareSettings
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    clerk: dict[DemoType, str]
    git: GitSettings = Field(default_factory=GitSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    # This installation's owner id, carried in every mark (project name, record comment,
    # labels; see reconciler/marks.py): resources of another owner id are foreign. Kept
    # after `supabase`, whose prefix its length check reads.
    ownerId: str = DEFAULT_OWNER_ID
    # Adopt resources marked before owner ids existed (`<prefix><demo id>` projects,
    # `managed-by=democtl demo=<id>` comments, labels without an owner id). Only the one
    # installation that made them may say so; to every other one they are foreign.
    adoptUnownedMarks: bool = False

    @field_validator("ownerId")
    @classmethod
    def _owner_fits(cls, value: str, info: ValidationInfo) -> str:
        supabase = info.data.get("supabase")
        prefix = supabase.projectPrefix if isinstance(supabase, SupabaseSettings) else ""
        problem = owner_id_problem(value, prefix)
        if problem:
            raise ValueError(f"owner id {value!r} {problem}")
        return value

    @property
    def owner(self) -> Owner:
        return Owner(self.ownerId, self.adoptUnownedMarks)

    notices: NoticeSettings | None = None
    usage: UsageSettings | None = None

    @field_validator("profiles")
    @classmethod
    def _has_small(cls, value: dict[str, Profile]) -> dict[str, Profile]:
        if "small" not in value:
            raise ValueError("a profile named 'small' is required (the default profile)")
        return value

    @field_validator("clerk")
    @classmethod
    def _every_type(cls, value: dict[DemoType, str]) -> dict[DemoType, str]:
        missing = [t.value for t in DemoType if t not in value]
        if missing:
            raise ValueError(f"a Clerk publishable key is required for {', '.join(missing)}")
        return value

    def settings_hash(self) -> str:
        """A short, stable hash of the settings: a change is a new cause for a failed demo."""
        # notices change nothing a demo is built from, so they are no new cause (and the
        # webhook URL, a secret, is kept out of a hash written to status files)
        data = self.model_dump(mode="json", exclude={"notices", "usage"})
        for profile in data["profiles"].values():
            if profile.get("idleAfter") is None:
                profile.pop("idleAfter", None)
        payload = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()[:16]

    def url_for(self, kind: Literal["portal", "candidate", "api"], demo_id: str) -> str:
        pattern: str = getattr(self.urls, kind)
        return pattern.format(id=demo_id, domain=self.domain)

    def hosts(self, demo_id: str) -> dict[str, str]:
        return {k: self.url_for(k, demo_id) for k in ("portal", "candidate", "api")}


# --- status -----------------------------------------------------------------------------


class Phase(StrEnum):
    PENDING = "pending"
    CREATING = "creating"
    READY = "ready"
    DEGRADED = "degraded"
    DESTROYING = "destroying"
    FAILED = "failed"


class Condition(StrictModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    lastTransitionTime: datetime


class SupabaseStatus(StrictModel):
    projectRef: str | None = None
    url: str | None = None
    anonKey: str | None = None
    migrations: list[str] = Field(default_factory=list)
    seeded: bool = False


class DnsRecordStatus(StrictModel):
    name: str
    type: str
    content: str
    id: str | None = None


class HealthChecks(StrictModel):
    kubernetes: bool = False
    supabase: bool = False
    portal: bool = False
    candidate: bool = False
    apiGateway: bool = False

    @property
    def all_passing(self) -> bool:
        return all(self.model_dump().values())


class HealthFailure(StrictModel):
    """A check's run of unhealthy answers: how many in a row, since the first one."""

    count: Annotated[int, Field(ge=1)]
    since: datetime


class Notified(StrictModel):
    """The notices a demo's webhook has taken (see `plan.notices`): each is sent once.

    `expiringFor` is the expiry the expiring notice warned of: an extended demo is warned
    again about its new expiry, never twice about the same one.
    """

    ready: datetime | None = None
    expiring: datetime | None = None
    expiringFor: datetime | None = None


class DemoStatus(StrictModel):
    """The observed state of one demo, as written to `status/<id>.yaml`.

    Only discrete facts live here; it must not change when nothing changed.
    """

    apiVersion: Literal["demos.splits.network/v1"] = "demos.splits.network/v1"
    kind: Literal["DemoStatus"] = "DemoStatus"
    schemaVersion: Literal[1] = 1
    id: DemoId
    namespace: str
    demoType: DemoType
    profile: str
    phase: Phase
    createdBy: str
    createdAt: datetime
    expiresAt: datetime
    specHash: str
    urls: dict[str, str] = Field(default_factory=dict)
    supabase: SupabaseStatus = Field(default_factory=SupabaseStatus)
    # the project whose credentials the Kubernetes Secret holds; None after a failed write
    secretProjectRef: str | None = None
    # the release failure (NamespaceState.release_stalled) democtl already asked the GitOps
    # controller to reset: one reset per failure, never a loop of them
    releaseResetFor: str | None = None
    dns: list[DnsRecordStatus] = Field(default_factory=list)
    healthChecks: HealthChecks = Field(default_factory=HealthChecks)
    # A ready demo's checks that answered unhealthy, below the failure threshold (None when
    # there are none, so a healthy demo's file never carries it): see `status._judge_health`.
    healthFailures: dict[str, HealthFailure] | None = None
    conditions: list[Condition] = Field(default_factory=list)
    attempts: Annotated[int, Field(ge=0)] = 0
    # after a failed attempt: not before this time (the planner skips the demo until then)
    nextAttemptAt: datetime | None = None
    # the settings the failures happened under (kept only with attempts or a failed phase):
    # other settings are a new cause, which resets the attempts
    settingsHash: str | None = None
    queuePosition: int | None = None
    message: str = ""
    notified: Notified | None = None
    # set when the idle rule expired the demo (then its teardown goes on whatever
    # Prometheus says later): when, and the last request seen then (None: none in the window)
    idleExpiredAt: datetime | None = None
    lastAccessed: datetime | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def demo_status_dict(status: DemoStatus) -> dict[str, Any]:
    """The status as plain data in a stable field order, for YAML and JSON output."""
    return status.model_dump(mode="json", exclude_none=True)
