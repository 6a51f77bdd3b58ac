"""The Kubernetes adapter: demo namespaces' health, the credentials Secret, node capacity.

Owns every call democtl makes to a Kubernetes API server, through the official
`kubernetes` client: server-side apply and deletion of the per-demo Secret,
the cluster-wide listings that observe demo namespaces (namespaces, pods,
resource quotas, Secrets, HelmReleases or Applications: a fixed number of list
calls, paginated, whatever the number of demos), and the nodes' allocatable
capacity. It never creates namespaces or workloads: Flux or Argo CD do, from
`rendered/`. `ApiException` and transport errors become `ProviderError` here and
nowhere else. Every call is retried a few times, briefly, on 502/503/504, on a 429
with a short Retry-After and on connections that failed or dropped (urllib3's
`Retry`, the transport's one retry place): observing takes several list calls, and
single-shot they left a cycle blind whenever any one failed (at 20 % faults three
cycles in four). The adapter's writes are idempotent, so a retry cannot do a thing
twice: server-side apply of the Secret (the same applied configuration gives the same
object, kubernetes.io/docs/reference/using-api/server-side-apply/), a merge patch of
fixed fields, and a delete whose 404 means done; single-shot, one lost answer in a
demo's chain of writes held it creating for cycles. A 429's longer Retry-After goes
to the loop, which honours it. Secret values never reach a log or an error.

Every call waits for a token of a client-side QPS limiter (client-go's 5 QPS, burst 10,
unless configured). Every answer and retry is told to a `RequestObserver` when one is
given (metrics), named by verb and resource. May import the kubernetes client, PyYAML,
`marks`, `providers.base`, `providers.budget`, `quantity` and (a type only)
`providers.http`. Ownership is the label mark of `marks` (managed-by, demo id, owner id):
another owner id's namespaces and Secrets are neither listed nor deleted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

import urllib3
import urllib3.connectionpool
import yaml
from kubernetes import client, config
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import MaxRetryError, ResponseError

from reconciler.marks import DEMO_ID_LABEL, MANAGED_BY_LABEL, OWNER_ID_LABEL, Owner
from reconciler.providers.base import (
    SECRET_MIGRATIONS_ANNOTATION,
    SECRET_PROJECT_REF_ANNOTATION,
    SECRET_SEED_ANNOTATION,
    SHORT_RETRY_AFTER,
    ClusterProvider,
    NamespaceMeta,
    NamespaceState,
    ProviderError,
    RateLimited,
)
from reconciler.providers.budget import TokenBucket, parse_retry_after
from reconciler.quantity import format_cpu, format_memory, parse_quantity

if TYPE_CHECKING:
    from reconciler.providers.http import RequestObserver

log = logging.getLogger(__name__)

PROVIDER = "kubernetes"
# helm-controller reconciles a HelmRelease at once when a `valuesFrom` Secret changes only if
# the Secret carries this label; without it the new keys wait for the release's interval.
# https://fluxcd.io/flux/components/helm/helmreleases/#values-references ("Reacting
# immediately to configuration dependencies", helm-controller v0.37 / Flux 2.2).
FLUX_WATCH_LABEL = "reconcile.fluxcd.io/watch"
DEFAULT_SECRET_NAME = "supabase-credentials"  # noqa: S105 - a name, not a secret
# client-go's defaults for a rest.Config that sets none (k8s.io/client-go/rest/config.go:
# DefaultQPS 5.0, DefaultBurst 10): the adapter's own default when built without settings.
# democtl's settings default to Flux's controllers' 50 / 300 (`kubernetes.clientQps`,
# `kubernetes.clientBurst`): 5 a second held 50 new demos' Secrets for seconds.
DEFAULT_QPS = 5.0
DEFAULT_BURST = 10
# urllib3 keeps this many connections per host; client-go reuses one HTTP/2 connection
# for every call, and a pool smaller than the apply workers would open and discard a
# connection per call beyond it ("Connection pool is full")
POOL_SIZE = 64
APPLY_PATCH = "application/apply-patch+yaml"
FLUX_GROUP, FLUX_VERSION, FLUX_PLURAL = "helm.toolkit.fluxcd.io", "v2", "helmreleases"
ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "applications"

T = TypeVar("T")


def pod_selector_for(mode: Literal["namespace", "label"]) -> str | None:
    """The pod listing's label selector for `kubernetes.podSelector`: none for "namespace"
    (every pod of a demo namespace counts), the demo-id label for "label"."""
    return DEMO_ID_LABEL if mode == "label" else None


GitOps = Literal["flux", "argo"]


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    # the one reading of Retry-After the other adapters share (seconds or an HTTP-date)
    return parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))


def _upstream_message(exc: ApiException) -> str:
    """The `message` of the Status body; Status messages never carry Secret data."""
    with contextlib.suppress(ValueError, TypeError):
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and body.get("message"):
            return f"{exc.status} {body.get('reason', '')}: {body['message']}".strip()
    return f"{exc.status} {exc.reason or 'error'}"


def _scrub(message: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if len(value) >= 4:
            message = message.replace(value, "[REDACTED]")
            message = message.replace(base64.b64encode(value.encode()).decode(), "[REDACTED]")
    return message


def convert_error(
    exc: Exception,
    operation: str,
    demo_id: str | None = None,
    *,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """Classify a client failure: 429, 5xx and transport errors may succeed later.

    `secrets` are values that must not survive into the message even if the server
    echoes them back.
    """
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        retry_after = _retry_after(exc.headers)
        message = _scrub(_upstream_message(exc), secrets)
        if status == 429:
            return RateLimited(
                PROVIDER,
                operation,
                message,
                demo_id=demo_id,
                retryable=True,
                retry_after=retry_after,
                status_code=status,
            )
        return ProviderError(
            PROVIDER,
            operation,
            message,
            demo_id=demo_id,
            retryable=status >= 500 or status == 0,
            retry_after=retry_after,
            status_code=status or None,
        )
    # urllib3 connection refused/reset/timeouts: the API server may be back next time.
    return ProviderError(
        PROVIDER,
        operation,
        _scrub(f"{type(exc).__name__}: {exc}", secrets),
        demo_id=demo_id,
        retryable=True,
    )


_TRANSPORT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ReadRetry(urllib3.Retry):
    """A read answered 429 with a short Retry-After is tried again after it, as client-go
    does (k8s.io/client-go/rest/request.go: a 429 or 5xx carrying Retry-After is retried
    after that wait, up to maxRetries); API Priority and Fairness answers 429 so
    (kubernetes.io/docs/concepts/cluster-administration/flow-control/). Single-shot, one
    such 429 among the observing list calls left the whole cycle blind on Kubernetes.
    A long wait (or none stated) is not slept out here: its Retry-After is the loop's.

    `waited` keeps the pause before each retry (one per `history` entry, which urllib3
    keeps on the reply's `retries`), so that the metrics can say what a 429 cost."""

    waited: tuple[float, ...] = ()

    def new(self, **kw: Any) -> Self:
        fresh = super().new(**kw)
        fresh.waited = self.waited
        return fresh

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: urllib3.BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: urllib3.connectionpool.ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None and response.status == 429:
            wait = self.get_retry_after(response)
            if _pool is not None and (wait is None or wait > SHORT_RETRY_AFTER):
                # the answer is returned as is (raise_on_status is off)
                raise MaxRetryError(_pool, url or "", ResponseError("429: Retry-After too long"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: urllib3.BaseHTTPResponse | None = None) -> None:
        # urllib3's own sleep, but saying how long: a 429's (short) Retry-After, else backoff
        wait = self.get_retry_after(response) if response and response.status == 429 else None
        if not wait:
            wait = self.get_backoff_time()
        if wait > 0:
            time.sleep(wait)
        self.waited += (wait,)


# Reads and the adapter's idempotent writes (module docstring); bounded, jittered; the
# last answer is returned as is so that it becomes the usual ProviderError.
_READ_RETRY = _ReadRetry(
    total=3,
    backoff_factor=0.1,
    backoff_jitter=0.1,
    status_forcelist=(429, 502, 503, 504),
    allowed_methods=frozenset({"GET", "PATCH", "DELETE"}),
    raise_on_status=False,
    # a 5xx's Retry-After is not slept out in the transport (a 429's short one is, above)
    respect_retry_after_header=False,
)


def _single_shot(configuration: client.Configuration) -> client.Configuration:
    """Writes single-shot, reads retried briefly (see the module docstring)."""
    configuration.retries = _READ_RETRY
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, POOL_SIZE)
    if _is_loopback(configuration.host):
        configuration.proxy = None  # a proxy from the environment must not capture loopback
    elif configuration.ssl_ca_cert is None and os.environ.get("SSL_CERT_FILE"):
        # The client reads HTTPS_PROXY/NO_PROXY and the kubeconfig's proxy-url itself,
        # but without a CA of the kubeconfig it trusts certifi's bundle, not SSL_CERT_FILE.
        configuration.ssl_ca_cert = os.environ["SSL_CERT_FILE"]
    return configuration


def _read(response: Any) -> bytes:
    """Read a raw (`_preload_content=False`) reply and give its connection back to the pool."""
    try:
        data: bytes = response.data
    finally:
        response.release_conn()
    return data


# The Kubernetes verb of a request (kubernetes.io/docs/reference/access-authn-authz/
# authorization/#determine-the-request-verb): a GET of a collection lists, of an object gets.
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def request_operation(method: str, url: str) -> str:
    """A request's metrics name: its Kubernetes verb and resource, as the API server's own
    `apiserver_request_total` labels it (`list pods`, `patch secrets`); never a name or a
    namespace, which would make a series per object. A non-resource path (`/version`)
    is named by the path."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    prefix = {"api": 2, "apis": 3}.get(parts[0] if parts else "")
    if prefix is None:
        return f"{method.lower()} /{'/'.join(parts)}"
    rest_of = parts[prefix:]
    if len(rest_of) > 2 and rest_of[0] == "namespaces":
        rest_of = rest_of[2:]  # namespaces/<ns>/<resource>...: the resource is what is asked
    resource = "/".join(rest_of[:1] + rest_of[2:3]) or "/"  # with a subresource (pods/log)
    one = len(rest_of) > 1
    if method == "GET":
        verb = "get" if one else "list"
    elif method == "DELETE":
        verb = "delete" if one else "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    return f"{verb} {resource}"


class _ObservedRest(rest.RESTClientObject):
    """The client's transport, telling `observer` of each exchange as `providers.http` does
    for httpx: every answer by its status code, the transport's retries (urllib3 keeps
    them on the reply's `retries.history`) with the pause before each."""

    def __init__(self, configuration: client.Configuration, observer: RequestObserver) -> None:
        super().__init__(configuration)
        self.observer = observer

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> rest.RESTResponse:
        reply: rest.RESTResponse = super().request(  # type: ignore[no-untyped-call]
            method, url, *args, **kwargs
        )
        operation = request_operation(method.upper(), url)
        retries = getattr(reply.response, "retries", None)
        history = retries.history if isinstance(retries, urllib3.Retry) else ()
        waited = getattr(retries, "waited", ())
        for n, attempt in enumerate(history):
            if attempt.status is not None:
                self.observer.response(PROVIDER, operation, attempt.status)
            pause = waited[n] if n < len(waited) else 0.0
            self.observer.retried(PROVIDER, operation, attempt.status, pause)
        self.observer.response(PROVIDER, operation, reply.status)
        return reply


def _api_client(
    configuration: client.Configuration, observer: RequestObserver | None
) -> client.ApiClient:
    api = client.ApiClient(_single_shot(configuration))
    if observer is not None:
        api.rest_client.close()
        api.rest_client = _ObservedRest(configuration, observer)
    return api


@dataclass
class _Demo:
    """What the listings say about one managed namespace, before it becomes a NamespaceState."""

    name: str
    demo_id: str | None
    phase: str
    pods_ready: int = 0
    pods_seen: int = 0
    restarts: int = 0
    pods_expected: int | None = None
    release_ready: bool = False
    release_message: str = "no release found"
    release_stalled: str | None = None
    release_object: tuple[str, str] | None = None
    secret_present: bool = False
    secret_project_ref: str | None = None
    secret_migrations: str | None = None
    secret_seed: str | None = None
    secret_url: str | None = None
    secret_anon_key: str | None = None
    quota_used: dict[str, str] = field(default_factory=dict)
    quota_hard: dict[str, str] = field(default_factory=dict)

    def state(self) -> NamespaceState:
        used, hard = self.quota_used, self.quota_hard
        return NamespaceState(
            name=self.name,
            demo_id=self.demo_id,
            phase=self.phase,
            pods_ready=self.pods_ready,
            pods_expected=self.pods_expected if self.pods_expected is not None else self.pods_seen,
            restarts=self.restarts,
            release_ready=self.release_ready,
            release_message=self.release_message,
            release_stalled=self.release_stalled,
            release_object=self.release_object,
            secret_present=self.secret_present,
            secret_project_ref=self.secret_project_ref,
            secret_migrations=self.secret_migrations,
            secret_seed=self.secret_seed,
            secret_url=self.secret_url,
            secret_anon_key=self.secret_anon_key,
            cpu_used=used.get("requests.cpu", used.get("cpu", "0")),
            memory_used=used.get("requests.memory", used.get("memory", "0")),
            pods_quota=int(hard.get("pods", hard.get("count/pods", "0"))),
            cpu_hard=hard.get("requests.cpu", hard.get("cpu", "0")),
            memory_hard=hard.get("requests.memory", hard.get("memory", "0")),
            pods_used=int(used.get("pods", used.get("count/pods", str(self.pods_seen)))),
        )


def expected_replicas(values: Mapping[str, Any]) -> int | None:
    """Sum of `services.<name>.replicas` in the chart values; None when there are none."""
    services = values.get("services")
    if not isinstance(services, Mapping) or not services:
        return None
    total = 0
    for given in services.values():
        service = given if isinstance(given, Mapping) else {}
        if service.get("enabled") is False:
            continue
        total += int(service.get("replicas", 1))
    return total


def _application_values(app: Mapping[str, Any]) -> dict[str, Any]:
    spec = app.get("spec") or {}
    for source in [spec.get("source") or {}, *(spec.get("sources") or [])]:
        helm = source.get("helm") or {}
        if isinstance(helm.get("valuesObject"), Mapping):
            return dict(helm["valuesObject"])
        if helm.get("values"):
            with contextlib.suppress(yaml.YAMLError):
                parsed = yaml.safe_load(helm["values"])
                if isinstance(parsed, dict):
                    return parsed
    return {}


def _helmrelease_stalled(status: Mapping[str, Any]) -> str | None:
    """The failure a HelmRelease gave up on, or None.

    helm-controller marks a release whose install/upgrade remediation retries ran out
    with Stalled=True, reason RetriesExceeded (Ready=False), and stops until the spec
    changes or a reset is requested
    (https://fluxcd.io/flux/components/helm/helmreleases/#resetting-remediation-retries).
    The key names that failure by the attempted generation and its message, not by its
    time: a release that fails the same way again after democtl's reset stalls with a new
    transition time, and keying on it would reset it after every round of retries, a loop.
    A new spec (generation) or a new message is a new cause.
    """
    conditions = status.get("conditions") or []
    stalled = next(
        (
            c
            for c in conditions
            if c.get("type") == "Stalled"
            and c.get("status") == "True"
            and c.get("reason") == "RetriesExceeded"
        ),
        None,
    )
    if stalled is None:
        return None
    return "/".join(
        [
            "flux",
            str(status.get("lastAttemptedGeneration", "")),
            str(stalled.get("message", "")),
        ]
    )


def _application_stalled(app: Mapping[str, Any]) -> str | None:
    """The failed sync an Application gave up on, or None.

    Argo CD retries a failed automated sync up to `syncPolicy.retry.limit` times, recorded
    in `status.operationState.retryCount`; then the operation ends Failed or Error and
    automated sync does not try the same revision again
    (https://argo-cd.readthedocs.io/en/stable/user-guide/auto_sync/#automated-sync-semantics).
    """
    operation = (app.get("status") or {}).get("operationState") or {}
    if operation.get("phase") not in ("Failed", "Error"):
        return None
    limit = int(
        (((app.get("spec") or {}).get("syncPolicy") or {}).get("retry") or {}).get("limit") or 0
    )
    if int(operation.get("retryCount") or 0) < limit:
        return None  # still retrying
    revision = ((operation.get("syncResult") or {}).get("revision")) or (
        ((operation.get("operation") or {}).get("sync") or {}).get("revision", "")
    )
    return "/".join(
        [
            "argo",
            str(revision),  # not finishedAt: the same failure again is not a new cause
            str(operation.get("message", "")),
        ]
    )


def _decoded(value: object) -> str | None:
    """A Secret data value as text; None when absent or not base64 of UTF-8."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


class KubernetesCluster:
    """`ClusterProvider` on the official client; cost per observe is pages, not demos."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        gitops: GitOps = "flux",
        field_manager: str = "democtl",
        secret_name: str = DEFAULT_SECRET_NAME,
        pod_selector: str | None = DEMO_ID_LABEL,
        page_size: int = 500,
        timeout: float = 15.0,
        owner: Owner | None = None,
        qps: float | None = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        limiter: TokenBucket | None = None,
    ) -> None:
        """`pod_selector` picks the demo pods in one cluster-wide listing; the chart labels
        its pods with the demo id. `None` lists every pod of the cluster instead."""
        self.api_client = api_client
        self.gitops = gitops
        self.field_manager = field_manager
        self.secret_name = secret_name
        self.pod_selector = pod_selector
        self.owner = owner or Owner()
        self.page_size = page_size
        self.timeout = timeout
        # client-side flow control, as client-go's: a steady `qps` with `burst` saved up;
        # a call waits for its token (None: no limit)
        self.limiter = limiter or (TokenBucket(qps, burst) if qps else None)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @classmethod
    def from_environment(
        cls,
        *,
        gitops: GitOps = "flux",
        secret_name: str = DEFAULT_SECRET_NAME,
        context: str | None = None,
        observer: RequestObserver | None = None,
        **options: Any,
    ) -> KubernetesCluster:
        """In-cluster config inside a pod, otherwise `KUBECONFIG` (or ~/.kube/config).

        `observer` hears of every request (metrics)."""
        configuration = client.Configuration()
        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    # the client reads KUBECONFIG once at import; read it now instead
                    config_file=os.environ.get("KUBECONFIG") or None,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, OSError, TypeError) as exc:
            raise ProviderError(PROVIDER, "load config", str(exc)) from None
        return cls(
            _api_client(configuration, observer),
            gitops=gitops,
            secret_name=secret_name,
            **options,
        )

    @classmethod
    def for_url(
        cls,
        url: str,
        *,
        gitops: GitOps = "flux",
        secret_name: str = DEFAULT_SECRET_NAME,
        token: str = "democtl-local",  # noqa: S107 - the emulator accepts any token
        observer: RequestObserver | None = None,
        **options: Any,
    ) -> KubernetesCluster:
        """A plain-HTTP API server such as the local emulator."""
        configuration = client.Configuration(host=url.rstrip("/"))
        configuration.api_key = {"BearerToken": f"Bearer {token}"}
        return cls(
            _api_client(configuration, observer),
            gitops=gitops,
            secret_name=secret_name,
            **options,
        )

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    # --- calls ----------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        demo_id: str | None,
        call: Callable[[], T],
        *,
        secrets: Iterable[str] = (),
    ) -> T:
        if self.limiter is not None:
            self.limiter.acquire()
        try:
            return call()
        except _TRANSPORT_ERRORS as exc:
            error = convert_error(exc, operation, demo_id, secrets=secrets)
            log.warning("%s%s", f"demo {demo_id}: " if demo_id else "", error)
            raise error from None

    def _list(self, operation: str, fetch: Callable[[str | None], Any]) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list call; `fetch(continue_token)` returns the raw reply."""
        token: str | None = None
        while True:
            page = self._call(operation, None, functools.partial(self._page, fetch, token))
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return

    @staticmethod
    def _page(fetch: Callable[[str | None], Any], token: str | None) -> dict[str, Any]:
        page: dict[str, Any] = json.loads(_read(fetch(token)))
        return page

    def _core_list(
        self, method: Callable[..., Any], operation: str, label_selector: str | None
    ) -> Iterator[dict[str, Any]]:
        def fetch(token: str | None) -> Any:
            kwargs: dict[str, Any] = {"limit": self.page_size, "_preload_content": False}
            if label_selector:
                kwargs["label_selector"] = label_selector
            if token:
                kwargs["_continue"] = token
            return method(_request_timeout=self.timeout, **kwargs)

        return self._list(operation, fetch)

    def _custom_list(self, group: str, version: str, plural: str) -> Iterator[dict[str, Any]]:
        def fetch(token: str | None) -> Any:
            kwargs: dict[str, Any] = {"limit": self.page_size, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            return self.custom.list_cluster_custom_object(
                group, version, plural, _request_timeout=self.timeout, **kwargs
            )

        return self._list(f"list {plural}", fetch)

    @property
    def _marked(self) -> str:
        """The label selector of what may be ours: the server leaves out other owner ids,
        unless unowned marks are adopted (a label's absence cannot be OR-ed in one
        selector); `Owner.label_demo` decides in every case."""
        selector = f"{MANAGED_BY_LABEL}=democtl"
        if not self.owner.adopt_unowned:
            selector += f",{OWNER_ID_LABEL}={self.owner.id}"
        return selector

    # --- ClusterProvider ------------------------------------------------------------------

    def list_all_namespaces(self) -> list[NamespaceMeta]:
        """Names and labels of every namespace, so a new demo never takes over a foreign one."""
        return sorted(
            (
                NamespaceMeta(
                    ns["metadata"]["name"],
                    tuple(sorted((ns["metadata"].get("labels") or {}).items())),
                )
                for ns in self._core_list(self.core.list_namespace, "list all namespaces", None)
            ),
            key=lambda n: n.name,
        )

    def list_namespaces(self) -> list[NamespaceState]:
        """One paginated listing per kind, joined by namespace."""
        demos: dict[str, _Demo] = {}
        for ns in self._core_list(self.core.list_namespace, "list namespaces", self._marked):
            meta = ns.get("metadata") or {}
            demo_id = self.owner.label_demo(meta.get("labels"))
            if demo_id is None:
                continue  # another installation's (another owner id), or not a demo's
            demos[meta["name"]] = _Demo(
                name=meta["name"],
                demo_id=demo_id,
                phase=(ns.get("status") or {}).get("phase", "Active"),
            )
        if not demos:
            return []
        for pod in self._core_list(
            self.core.list_pod_for_all_namespaces, "list pods", self.pod_selector
        ):
            demo = demos.get(pod["metadata"].get("namespace", ""))
            if demo is None:
                continue
            demo.pods_seen += 1
            demo.pods_ready += int(_pod_ready(pod))
            demo.restarts += sum(
                int(c.get("restartCount", 0))
                for c in (pod.get("status") or {}).get("containerStatuses") or []
            )
        for quota in self._core_list(
            self.core.list_resource_quota_for_all_namespaces, "list resourcequotas", None
        ):
            demo = demos.get(quota["metadata"].get("namespace", ""))
            if demo is not None:
                status = quota.get("status") or {}
                demo.quota_hard.update(status.get("hard") or {})
                demo.quota_used.update(status.get("used") or {})
        for secret in self._core_list(
            self.core.list_secret_for_all_namespaces, "list secrets", self._marked
        ):
            # Of the data only the two public values are read (the URL, and the anon key
            # that browsers hold and the status file records); the service-role key and the
            # password are dropped with the page.
            demo = demos.get(secret["metadata"].get("namespace", ""))
            if (
                demo is not None
                and secret["metadata"]["name"] == self.secret_name
                and self.owner.label_demo(secret["metadata"].get("labels")) == demo.demo_id
            ):
                demo.secret_present = True
                annotations = secret["metadata"].get("annotations") or {}
                demo.secret_project_ref = annotations.get(SECRET_PROJECT_REF_ANNOTATION)
                demo.secret_migrations = annotations.get(SECRET_MIGRATIONS_ANNOTATION)
                demo.secret_seed = annotations.get(SECRET_SEED_ANNOTATION)
                data = secret.get("data") or {}
                demo.secret_url = _decoded(data.get("SUPABASE_URL"))
                demo.secret_anon_key = _decoded(data.get("SUPABASE_ANON_KEY"))
        if self.gitops == "flux":
            self._observe_helmreleases(demos)
        else:
            self._observe_applications(demos)
        states = [demo.state() for _, demo in sorted(demos.items())]
        for state in states:
            log.debug(
                "demo %s: namespace %s pods %d/%d restarts %d release_ready=%s secret=%s",
                state.demo_id,
                state.name,
                state.pods_ready,
                state.pods_expected,
                state.restarts,
                state.release_ready,
                state.secret_present,
            )
        return states

    def _observe_helmreleases(self, demos: dict[str, _Demo]) -> None:
        for release in self._custom_list(FLUX_GROUP, FLUX_VERSION, FLUX_PLURAL):
            spec = release.get("spec") or {}
            namespace = spec.get("targetNamespace") or release["metadata"].get("namespace")
            demo = demos.get(namespace or "")
            if demo is None:
                continue
            demo.pods_expected = expected_replicas(spec.get("values") or {})
            demo.release_object = (release["metadata"]["namespace"], release["metadata"]["name"])
            status = release.get("status") or {}
            demo.release_stalled = _helmrelease_stalled(status)
            conditions = status.get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            generation = int(release["metadata"].get("generation") or 0)
            observed = int(status.get("observedGeneration") or 0)
            if generation and observed < generation:
                # A Ready condition of an older spec says nothing about the current one.
                demo.release_ready = False
                demo.release_message = (
                    f"HelmRelease generation {generation} not reconciled yet (at {observed})"
                )
            elif ready is None:
                demo.release_ready, demo.release_message = False, "HelmRelease not reconciled yet"
            else:
                demo.release_ready = ready.get("status") == "True"
                demo.release_message = f"{ready.get('reason', '')}: {ready.get('message', '')}"

    def _observe_applications(self, demos: dict[str, _Demo]) -> None:
        for app in self._custom_list(ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL):
            destination = (app.get("spec") or {}).get("destination") or {}
            demo = demos.get(destination.get("namespace") or "")
            if demo is None:
                continue
            demo.pods_expected = expected_replicas(_application_values(app))
            demo.release_object = (app["metadata"]["namespace"], app["metadata"]["name"])
            status = app.get("status") or {}
            demo.release_stalled = _application_stalled(app)
            health = (status.get("health") or {}).get("status", "Unknown")
            sync = (status.get("sync") or {}).get("status", "Unknown")
            demo.release_ready = health == "Healthy" and sync == "Synced"
            detail = (status.get("health") or {}).get("message") or next(
                (c.get("message", "") for c in status.get("conditions") or []), ""
            )
            demo.release_message = f"health {health}, sync {sync}" + (
                f": {detail}" if detail else ""
            )

    def apply_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """Server-side apply; annotations left out of a later apply are removed by it."""
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": {
                **self.owner.labels(namespace),
                # harmless under Argo CD, which does not read the Secret
                FLUX_WATCH_LABEL: "Enabled",
            },
        }
        if annotations:
            metadata["annotations"] = dict(sorted(annotations.items()))
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
        }
        self._call(
            "apply secret",
            namespace,
            lambda: _read(
                self.core.patch_namespaced_secret(
                    name,
                    namespace,
                    body,
                    field_manager=self.field_manager,
                    force=True,
                    _content_type=APPLY_PATCH,
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            ),
            secrets=list(data.values()),
        )
        log.info(
            "demo %s: applied secret %s/%s (keys %s)", namespace, namespace, name, sorted(data)
        )

    def reset_release(self, namespace: str, name: str, token: str) -> None:
        """A merge patch of the release's annotations (and, for Argo CD, its operation).

        Flux: requestedAt and resetAt set to the same token make helm-controller reset the
        remediation counts and try again (fluxcd/helm-controller#823, the annotations
        `flux reconcile hr --reset` sets). Argo CD: `argocd.argoproj.io/refresh: hard` and
        a sync `operation` with retry, what `argocd app sync --retry-limit` submits.
        """
        if self.gitops == "flux":
            body: dict[str, Any] = {
                "metadata": {
                    "annotations": {
                        "reconcile.fluxcd.io/requestedAt": token,
                        "reconcile.fluxcd.io/resetAt": token,
                    }
                }
            }
            group, version, plural = FLUX_GROUP, FLUX_VERSION, FLUX_PLURAL
        else:
            body = {
                "metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}},
                "operation": {
                    "initiatedBy": {"username": "democtl"},
                    "info": [{"name": "reason", "value": token}],
                    "sync": {"prune": True},
                    "retry": {"limit": 5, "backoff": {"duration": "30s", "factor": 2}},
                },
            }
            group, version, plural = ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL
        self._call(
            "reset release",
            namespace,
            lambda: _read(
                self.custom.patch_namespaced_custom_object(
                    group,
                    version,
                    namespace,
                    plural,
                    name,
                    body,
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            ),
        )
        log.info("demo %s: asked %s/%s for a reset (%s)", namespace, namespace, name, token)

    def delete_secret(self, namespace: str, name: str) -> None:
        """Delete the Secret if it carries our mark; one without it is refused, never deleted.

        The mark is read fresh (a failed read raises, and nothing is deleted), the
        same rule as DNS records and Supabase projects: a hand-made Secret of the
        same name in a demo namespace is not ours to remove.
        """
        try:
            current = json.loads(
                _read(
                    self.core.read_namespaced_secret(
                        name, namespace, _preload_content=False, _request_timeout=self.timeout
                    )
                )
            )
            labels = (current.get("metadata") or {}).get("labels") or {}
            if self.owner.label_demo(labels) != namespace:
                raise ProviderError(
                    PROVIDER,
                    "delete secret",
                    f"refusing to delete secret {namespace}/{name}: not marked as democtl's "
                    f"for {namespace} with owner id {self.owner.id}",
                    demo_id=namespace,
                )
            _read(
                self.core.delete_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=self.timeout
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                log.info("demo %s: secret %s/%s already gone", namespace, namespace, name)
                return
            raise convert_error(exc, "delete secret", namespace) from None
        except _TRANSPORT_ERRORS as exc:
            raise convert_error(exc, "delete secret", namespace) from None
        except ValueError:
            raise ProviderError(
                PROVIDER,
                "delete secret",
                f"unreadable reply for secret {namespace}/{name}; nothing deleted",
                demo_id=namespace,
                retryable=True,
            ) from None
        log.info("demo %s: deleted secret %s/%s", namespace, namespace, name)

    def node_allocatable(self) -> tuple[str, str]:
        cpu, memory = Decimal(0), Decimal(0)
        for node in self._core_list(self.core.list_node, "list nodes", None):
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            try:
                cpu += parse_quantity(str(allocatable.get("cpu", "0")))
                memory += parse_quantity(str(allocatable.get("memory", "0")))
            except ValueError as exc:
                raise ProviderError(
                    PROVIDER, "list nodes", f"node {node['metadata'].get('name')}: {exc}"
                ) from None
        return format_cpu(cpu), format_memory(memory)


def _conforms(cluster: KubernetesCluster) -> ClusterProvider:
    return cluster  # mypy checks that the adapter is a ClusterProvider
