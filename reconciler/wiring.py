"""Building the providers a command runs against: the real services or the local emulators.

Owns the choice between production adapters (credentials from the environment
only) and `--local` (emulators on loopback, no credentials, no network), and the
scratch state repository local mode reconciles in, and where the state
repository is when no `--repo` is given. The CLI calls this; the loop
receives the finished `Providers` and never knows which world it talks to. In local
mode every step here holds the local world's lock (`local.stack.local_lock`), so two
`--local` commands in one repository take turns instead of colliding in the scratch
repository.

A world served by `democtl local serve` (found by `local.world.find_world`) is used
instead of starting one. Its serving process holds the world's lock for its whole
life (it alone starts, writes and stops the emulators' state); its clients never take
that lock (they would wait for the serve to end) but a client lock of their own
repository (`<state>/client/lock`), which still keeps two commands of one repository
out of each other's scratch repository, while commands of other repositories, or
`--push` runs in other clones, use the world at once: the emulators serialise what
each request changes, and the state repository's writer lock and pushes keep the
git side safe.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.local import local_state_dir

if TYPE_CHECKING:
    from reconciler import gitstate
    from reconciler.apply import Providers
    from reconciler.doctor import Preflight
    from reconciler.local.server import Faults
    from reconciler.local.stack import LocalStack
    from reconciler.local.world import ServedWorld
    from reconciler.model import DemoStatus, Settings
    from reconciler.notify import Notices
    from reconciler.providers.cloudflare import CloudflareDns
    from reconciler.providers.http import RequestObserver
    from reconciler.providers.kubernetes import KubernetesCluster
    from reconciler.providers.kubernetes_access import ClusterAccess
    from reconciler.providers.prometheus import PrometheusUsage
    from reconciler.providers.supabase import SupabaseManagementClient

SCRATCH = "state"
CLIENT = "client"


log = logging.getLogger(__name__)


class SetupError(Exception):
    """The providers cannot be built as asked: exit 2 and say why."""


class CredentialsMissing(SetupError):
    """A production run without the credentials it needs; exit 2 and say which."""


def find_state_repo(start: Path) -> Path | None:
    """The state repository around `start`, found the way git finds its work tree.

    The nearest folder from `start` upwards that holds reconciler.yaml, never
    past the top of the git work tree `start` is in (the folder with `.git`);
    None outside a work tree, or when no folder of it holds reconciler.yaml.
    """
    from reconciler.validate import SETTINGS_FILE

    start = start.resolve()
    found: Path | None = None
    for folder in (start, *start.parents):
        if found is None and (folder / SETTINGS_FILE).is_file():
            found = folder
        if (folder / ".git").exists():  # a directory, or a file in a linked worktree
            return found
    return None


def served_world(repo: Path, settings: Settings) -> ServedWorld | None:
    """The world another process serves for this repository (or DEMOCTL_LOCAL_WORLD's)."""
    from reconciler.local.world import find_world

    return find_world(local_state_dir(repo), settings, os.environ)


def local_lock_dir(repo: Path, served: ServedWorld | None) -> Path:
    """Whose lock a local command takes: the world's, or with a served world its own
    client lock (the serve holds the world's for as long as it runs)."""
    return local_state_dir(repo) / CLIENT if served is not None else local_state_dir(repo)


def local_state_repo(repo: Path) -> Path:
    """The scratch clone local mode reconciles in, under the git-ignored state folder."""
    return local_state_dir(repo) / SCRATCH


def cycle_repo(repo: Path, settings: Settings, *, local: bool, push: bool, now: datetime) -> Path:
    """The working tree a cycle commits in.

    With --push the cycle runs in `repo` itself (a checkout of the state
    repository, as in CI). Local mode without --push works in a scratch clone,
    so the branch the user is working on never receives democtl's commits.
    """
    from reconciler import gitstate
    from reconciler.local.stack import acquire_local_lock, release_local_lock

    if local and not push:
        # held on into the command's open_providers, which releases it on exit
        lock_dir = local_lock_dir(repo, served_world(repo, settings))
        acquire_local_lock(lock_dir, hand_over=True)
        try:
            return gitstate.scratch_state_repo(
                repo, local_state_repo(repo), gitstate.Identity.from_settings(settings), when=now
            )
        except BaseException:
            release_local_lock(lock_dir, handed_over=True)
            raise
    return repo


@contextmanager
def plan_repo(repo: Path, settings: Settings, *, local: bool, now: datetime) -> Iterator[Path]:
    """Where `democtl plan` reads the state, without writing to any repository.

    Local mode plans on a temporary copy of its scratch state with the user's
    new commits merged in; otherwise the checkout itself is read as it is.
    """
    from reconciler import gitstate
    from reconciler.local.stack import local_lock

    if not local:
        yield repo
        return
    with (
        local_lock(local_lock_dir(repo, served_world(repo, settings))),
        tempfile.TemporaryDirectory(prefix="democtl-plan-") as tmp,
    ):
        yield gitstate.preview_state_repo(
            repo,
            local_state_repo(repo),
            Path(tmp) / SCRATCH,
            gitstate.Identity.from_settings(settings),
            when=now,
        )


@contextmanager
def open_providers(
    repo: Path,
    workdir: Path,
    settings: Settings,
    *,
    local: bool,
    observer: RequestObserver | None = None,
) -> Iterator[Providers]:
    """The providers for one command; local mode starts (and stops) the emulators.

    `observer` hears of the Supabase, Cloudflare and Kubernetes adapters' requests (metrics).

    The adapters' HTTP connections are closed on exit, so `democtl run`, which
    opens providers once per cycle, holds no connections between cycles.
    """
    from reconciler.local.stack import LocalStack, local_lock

    if local:
        faults, come_up = local_emulator_options(os.environ)
        served = served_world(repo, settings)
        if served is not None:
            # the serve's emulators (and its faults, come-up time and GitOps source)
            with local_lock(local_lock_dir(repo, served)):
                providers = replace(
                    local_providers(served, observer),
                    notices=notices_for(settings, os.environ),
                    usage=usage_for(settings),
                )
                try:
                    yield providers
                finally:
                    close_providers(providers)
            return
        with (
            local_lock(local_state_dir(repo)),
            LocalStack(
                local_state_dir(repo), workdir, settings, faults=faults, come_up_seconds=come_up
            ) as stack,
        ):
            providers = replace(
                local_providers(stack, observer), notices=notices_for(settings, os.environ)
            )
            providers = replace(providers, usage=usage_for(settings))
            try:
                yield providers
            finally:
                close_providers(providers)
        return
    providers = replace(
        production_providers(settings, observer), notices=notices_for(settings, os.environ)
    )
    providers = replace(providers, usage=usage_for(settings))
    try:
        yield providers
    finally:
        close_providers(providers)


def local_emulator_options(env: Mapping[str, str]) -> tuple[Faults | None, float]:
    """The injected faults and the projects' come-up time the local emulators start with."""
    from reconciler.local.server import parse_faults

    text = env.get("DEMOCTL_LOCAL_COME_UP_SECONDS", "2")
    try:
        come_up = float(text)
    except ValueError:
        raise SetupError(
            f"DEMOCTL_LOCAL_COME_UP_SECONDS={text!r} is not a number of seconds"
        ) from None
    faults_text = env.get("DEMOCTL_LOCAL_FAULTS", "")
    try:
        # off by default; set to rehearse rate limits, 5xx, timeouts and drops locally
        faults = parse_faults(faults_text) if faults_text.strip() else None
    except ValueError as exc:
        raise SetupError(f"DEMOCTL_LOCAL_FAULTS: {exc}") from None
    return faults, come_up


def notices_for(settings: Settings, env: Mapping[str, str]) -> Notices | None:
    """The notices sender `notices:` asks for, or None (not configured, or its variable unset).

    In local mode too: notices tell people about demos, wherever they run; point
    `webhookEnv` at a test channel (or leave the variable unset) while rehearsing.
    """
    from reconciler.model import webhook_url
    from reconciler.notify import Notices
    from reconciler.providers.webhook import SlackWebhook

    config = settings.notices
    if config is None:
        return None
    url = config.webhook
    if config.webhookEnv is not None:
        url = env.get(config.webhookEnv, "").strip() or None
        if url is None:
            log.warning("notices: %s is not set, no notice is sent", config.webhookEnv)
            return None
        try:
            webhook_url(url)
        except ValueError as exc:
            raise SetupError(f"{config.webhookEnv}: {exc}") from None
    assert url is not None  # the settings hold one source
    return Notices(SlackWebhook(url))


def usage_for(settings: Settings) -> PrometheusUsage | None:
    """The Prometheus reader `usage:` asks for (in local mode too: the URL is the settings')."""
    from reconciler.providers.prometheus import PrometheusUsage

    return PrometheusUsage(settings.usage.prometheusUrl) if settings.usage else None


def read_last_requests(
    settings: Settings, statuses: Mapping[str, DemoStatus], now: datetime
) -> dict[str, datetime | None] | None:
    """Running demos' last requests for `list` and `status`; None without `usage:`."""
    from reconciler.usage import last_requests

    reader = usage_for(settings)
    if reader is None:
        return None
    try:
        return last_requests(reader, settings, statuses, now)
    finally:
        reader.close()


def close_providers(providers: Providers) -> None:
    if providers.notices is not None:
        providers.notices.close()
    adapters = (providers.supabase, providers.dns, providers.cluster, providers.prober)
    for adapter in (*adapters, providers.usage):
        close = getattr(adapter, "close", None)
        if callable(close):
            close()


def local_providers(
    stack: LocalStack | ServedWorld, observer: RequestObserver | None = None
) -> Providers:
    """Production adapters pointed at a running stack's emulators (or a served world's)."""
    from reconciler import database
    from reconciler.apply import Providers

    return Providers(
        supabase=stack.supabase_client(observer),
        dns=stack.dns(observer),
        cluster=stack.cluster(observer),
        prober=stack.prober(),
        migrate=database.migrate,
        seed=database.seed,
    )


PROBE_RESOLVE = "DEMOCTL_PROBE_RESOLVE"


def probe_resolve(env: Mapping[str, str]) -> dict[str, str]:
    """Where the health probes go instead of the demos' public hostnames, if anywhere.

    `DEMOCTL_PROBE_RESOLVE=*.splits.network=http://127.0.0.1:8081,*=http://ingress:80`:
    `host`, `*.suffix` or `*` to a base URL; the probe keeps the public name in its
    Host header, so an ingress (or the local emulators' health server, which routes
    by Host as an ingress does) answers for the demo. Unset: the real hostnames.
    """
    text = env.get(PROBE_RESOLVE, "").strip()
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        host, sep, base = (x.strip() for x in part.partition("="))
        scheme = base.split("://", 1)[0] if "://" in base else ""
        if not sep or not host or scheme not in {"http", "https"}:
            raise SetupError(
                f"{PROBE_RESOLVE}: {part!r}: expected HOST=URL (HOST a name, *.suffix or *; "
                "URL starting with http:// or https://)"
            )
        mapping[host] = base
    return mapping


def production_providers(settings: Settings, observer: RequestObserver | None = None) -> Providers:
    from reconciler import database
    from reconciler.apply import Providers
    from reconciler.providers.base import ProviderError
    from reconciler.providers.cloudflare import CloudflareDns
    from reconciler.providers.http import RetryPolicy
    from reconciler.providers.kubernetes import KubernetesCluster, pod_selector_for
    from reconciler.providers.probe import HttpxProber
    from reconciler.providers.supabase import SupabaseManagementClient

    missing = [
        v for v in ("SUPABASE_ACCESS_TOKEN", "CLOUDFLARE_API_TOKEN") if not os.environ.get(v)
    ]
    if missing:
        raise CredentialsMissing(
            f"{' and '.join(missing)} not set; democtl reads credentials only from the "
            "environment (or run with --local to use the emulators)"
        )
    try:
        return Providers(
            # jitter seeded per process, so reconcilers that failed together do not
            # retry in lockstep (the one place randomness enters a production retry)
            supabase=SupabaseManagementClient.from_environment(
                settings, retry=RetryPolicy(rng=random.Random()), observer=observer
            ),
            dns=CloudflareDns(
                os.environ["CLOUDFLARE_API_TOKEN"],
                settings.cloudflare.zone,
                zone_id=settings.cloudflare.zoneId,
                base_url=settings.cloudflare.apiUrl,
                owner=settings.owner,
                observer=observer,
            ),
            cluster=KubernetesCluster.from_environment(
                gitops=settings.gitops,
                secret_name=settings.kubernetes.secretName,
                pod_selector=pod_selector_for(settings.kubernetes.podSelector),
                owner=settings.owner,
                observer=observer,
                qps=settings.kubernetes.clientQps,
                burst=settings.kubernetes.clientBurst,
            ),
            prober=HttpxProber(resolve=probe_resolve(os.environ)),
            migrate=database.migrate,
            seed=database.seed,
        )
    except ProviderError as exc:
        raise CredentialsMissing(str(exc)) from None


@contextmanager
def open_cluster(repo: Path, settings: Settings, *, local: bool) -> Iterator[KubernetesCluster]:
    """The cluster alone, for the commands that only read it (capacity, status --live).

    Local mode serves the emulated cluster's persisted world without the GitOps
    stand-in's source: syncing `rendered/` of a tree other than the one the last
    reconcile rendered (the user's checkout has none) would create or prune
    namespaces, and only a reconcile may change the emulated world. Production
    needs the kubeconfig or in-cluster config only, no other credentials.
    """
    from reconciler.local.kubernetes import KubernetesEmulator
    from reconciler.local.stack import local_access, local_nodes
    from reconciler.providers.base import ProviderError
    from reconciler.providers.kubernetes import KubernetesCluster

    if local:
        emulator = KubernetesEmulator(
            local_state_dir(repo),
            source=None,  # read-only: no Flux/Argo stand-in sync
            secret_name=settings.kubernetes.secretName,
            argo_namespace=settings.kubernetes.argoNamespace,
            nodes=local_nodes(settings),
            access=local_access(settings),
        )
        with emulator:
            cluster = KubernetesCluster.for_url(
                emulator.url,
                gitops=settings.gitops,
                secret_name=settings.kubernetes.secretName,
                owner=settings.owner,
                qps=settings.kubernetes.clientQps,
                burst=settings.kubernetes.clientBurst,
            )
            try:
                yield cluster
            finally:
                cluster.close()
        return
    try:
        cluster = KubernetesCluster.from_environment(
            gitops=settings.gitops,
            secret_name=settings.kubernetes.secretName,
            owner=settings.owner,
            qps=settings.kubernetes.clientQps,
            burst=settings.kubernetes.clientBurst,
        )
    except ProviderError as exc:
        raise SetupError(str(exc)) from None
    try:
        yield cluster
    finally:
        cluster.close()


def cluster_totals(repo: Path, settings: Settings, *, local: bool) -> tuple[Decimal, Decimal]:
    """The nodes' allocatable cpu and memory, from the cluster (or the local emulator).

    Raises SetupError when no cluster is configured, ProviderError when it cannot be read.
    """
    from reconciler.quantity import parse_quantity

    with open_cluster(repo, settings, local=local) as cluster:
        cpu, memory = cluster.node_allocatable()
    return parse_quantity(cpu), parse_quantity(memory)


@contextmanager
def open_preflight(repo: Path, settings: Settings, *, local: bool) -> Iterator[Preflight]:
    """What `democtl doctor` asks: the production services, or the emulators with --local.

    A service whose adapter cannot be built (a credential missing) is handed over as the
    reason, so doctor reports it and checks the others. Local mode serves the persisted
    world without the GitOps stand-in's source (doctor changes nothing; only reconcile
    may), and checks git against the checkout itself, which is local mode's remote.
    """
    from reconciler.doctor import Preflight
    from reconciler.local.stack import LocalStack, local_lock
    from reconciler.providers.base import ProviderError
    from reconciler.providers.cloudflare import CloudflareDns
    from reconciler.providers.http import RetryPolicy
    from reconciler.providers.kubernetes import KubernetesCluster
    from reconciler.providers.kubernetes_access import (
        REQUIRED_CRDS,
        ClusterAccess,
        required_permissions,
    )
    from reconciler.providers.supabase import SupabaseManagementClient

    permissions = required_permissions(settings.gitops)
    crds = REQUIRED_CRDS[settings.gitops]
    if local:
        served = served_world(repo, settings)
        with ExitStack() as scope:
            scope.enter_context(local_lock(local_lock_dir(repo, served)))
            stack: LocalStack | ServedWorld = served or scope.enter_context(
                LocalStack(local_state_dir(repo), repo, settings, gitops_source=False)
            )
            supabase, dns, cluster = stack.supabase_client(), stack.dns(), stack.cluster()
            try:
                yield Preflight(
                    supabase=supabase,
                    dns=dns,
                    cluster=ClusterAccess(cluster),
                    git=lambda: _remote_answers(repo, None, str(repo)),
                    permissions=permissions,
                    crds=crds,
                )
            finally:
                for adapter in (supabase, dns, cluster):
                    adapter.close()
        return
    env = os.environ
    opened: list[SupabaseManagementClient | CloudflareDns | KubernetesCluster] = []
    supabase_api: SupabaseManagementClient | str
    dns_api: CloudflareDns | str
    cluster_api: ClusterAccess | str
    try:
        supabase_api = SupabaseManagementClient.from_environment(
            settings, retry=RetryPolicy(attempts=2, rng=random.Random())
        )
        opened.append(supabase_api)
    except ProviderError as exc:
        supabase_api = exc.upstream_message
    if env.get("CLOUDFLARE_API_TOKEN"):
        dns_api = CloudflareDns(
            env["CLOUDFLARE_API_TOKEN"],
            settings.cloudflare.zone,
            zone_id=settings.cloudflare.zoneId,
            base_url=settings.cloudflare.apiUrl,
            max_retries=1,
        )
        opened.append(dns_api)
    else:
        dns_api = "CLOUDFLARE_API_TOKEN is not set; democtl reads credentials from the environment"
    try:
        cluster = KubernetesCluster.from_environment(
            gitops=settings.gitops,
            qps=settings.kubernetes.clientQps,
            burst=settings.kubernetes.clientBurst,
        )
        opened.append(cluster)
        cluster_api = ClusterAccess(cluster)
    except ProviderError as exc:
        cluster_api = exc.upstream_message
    try:
        yield Preflight(
            supabase=supabase_api,
            dns=dns_api,
            cluster=cluster_api,
            git=lambda: _remote_answers(repo, settings.git.branch, "origin"),
            permissions=permissions,
            crds=crds,
        )
    finally:
        for adapter in opened:
            adapter.close()


def _remote_answers(repo: Path, branch: str | None, remote: str) -> list[gitstate.RemoteCheck]:
    """gitstate's answers about the remote; a checkout that is no repository is one too."""
    from reconciler import gitstate

    try:
        return gitstate.check_remote(repo, branch, remote=remote)
    except gitstate.GitStateError as exc:
        return [gitstate.RemoteCheck("remote", False, str(exc))]
