"""Building the providers a command runs against: the real services or the local emulators.

Owns the choice between production adapters (credentials from the environment
only) and `--local` (emulators on loopback, no credentials, no network), and the
scratch state repository local mode reconciles in, and where the state
repository is when no `--repo` is given. The CLI calls this; the loop
receives the finished `Providers` and never knows which world it talks to. In local
mode every step here holds the local world's lock (`local.stack.local_lock`), so two
`--local` commands in one repository take turns instead of colliding in the scratch
repository.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from reconciler import database, gitstate
from reconciler.apply import Providers
from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.local.server import parse_faults
from reconciler.local.stack import (
    LocalStack,
    acquire_local_lock,
    local_lock,
    local_nodes,
    local_state_dir,
    release_local_lock,
)
from reconciler.model import Settings
from reconciler.providers.base import ProviderError
from reconciler.providers.cloudflare import CloudflareDns
from reconciler.providers.http import RetryPolicy
from reconciler.providers.kubernetes import KubernetesCluster, pod_selector_for
from reconciler.providers.probe import HttpxProber
from reconciler.providers.supabase import SupabaseManagementClient
from reconciler.quantity import parse_quantity
from reconciler.validate import SETTINGS_FILE

SCRATCH = "state"


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
    start = start.resolve()
    found: Path | None = None
    for folder in (start, *start.parents):
        if found is None and (folder / SETTINGS_FILE).is_file():
            found = folder
        if (folder / ".git").exists():  # a directory, or a file in a linked worktree
            return found
    return None


def local_state_repo(repo: Path) -> Path:
    """The scratch clone local mode reconciles in, under the git-ignored state folder."""
    return local_state_dir(repo) / SCRATCH


def cycle_repo(repo: Path, settings: Settings, *, local: bool, push: bool, now: datetime) -> Path:
    """The working tree a cycle commits in.

    With --push the cycle runs in `repo` itself (a checkout of the state
    repository, as in CI). Local mode without --push works in a scratch clone,
    so the branch the user is working on never receives democtl's commits.
    """
    if local and not push:
        # held on into the command's open_providers, which releases it on exit
        acquire_local_lock(local_state_dir(repo), hand_over=True)
        try:
            return gitstate.scratch_state_repo(
                repo, local_state_repo(repo), gitstate.Identity.from_settings(settings), when=now
            )
        except BaseException:
            release_local_lock(local_state_dir(repo), handed_over=True)
            raise
    return repo


@contextmanager
def plan_repo(repo: Path, settings: Settings, *, local: bool, now: datetime) -> Iterator[Path]:
    """Where `democtl plan` reads the state, without writing to any repository.

    Local mode plans on a temporary copy of its scratch state with the user's
    new commits merged in; otherwise the checkout itself is read as it is.
    """
    if not local:
        yield repo
        return
    with (
        local_lock(local_state_dir(repo)),
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
    repo: Path, workdir: Path, settings: Settings, *, local: bool
) -> Iterator[Providers]:
    """The providers for one command; local mode starts (and stops) the emulators.

    The adapters' HTTP connections are closed on exit, so `democtl run`, which
    opens providers once per cycle, holds no connections between cycles.
    """
    if local:
        text = os.environ.get("DEMOCTL_LOCAL_COME_UP_SECONDS", "2")
        try:
            come_up = float(text)
        except ValueError:
            raise SetupError(
                f"DEMOCTL_LOCAL_COME_UP_SECONDS={text!r} is not a number of seconds"
            ) from None
        faults_text = os.environ.get("DEMOCTL_LOCAL_FAULTS", "")
        try:
            # off by default; set to rehearse rate limits, 5xx, timeouts and drops locally
            faults = parse_faults(faults_text) if faults_text.strip() else None
        except ValueError as exc:
            raise SetupError(f"DEMOCTL_LOCAL_FAULTS: {exc}") from None
        with (
            local_lock(local_state_dir(repo)),
            LocalStack(
                local_state_dir(repo), workdir, settings, faults=faults, come_up_seconds=come_up
            ) as stack,
        ):
            providers = local_providers(stack)
            try:
                yield providers
            finally:
                close_providers(providers)
        return
    providers = production_providers(settings)
    try:
        yield providers
    finally:
        close_providers(providers)


def close_providers(providers: Providers) -> None:
    for adapter in (providers.supabase, providers.dns, providers.cluster, providers.prober):
        close = getattr(adapter, "close", None)
        if callable(close):
            close()


def local_providers(stack: LocalStack) -> Providers:
    """Production adapters pointed at a running stack's emulators."""
    return Providers(
        supabase=stack.supabase_client(),
        dns=stack.dns(),
        cluster=stack.cluster(),
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


def production_providers(settings: Settings) -> Providers:
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
                settings, retry=RetryPolicy(rng=random.Random())
            ),
            dns=CloudflareDns(
                os.environ["CLOUDFLARE_API_TOKEN"],
                settings.cloudflare.zone,
                zone_id=settings.cloudflare.zoneId,
                base_url=settings.cloudflare.apiUrl,
            ),
            cluster=KubernetesCluster.from_environment(
                gitops=settings.gitops,
                secret_name=settings.kubernetes.secretName,
                pod_selector=pod_selector_for(settings.kubernetes.podSelector),
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
    if local:
        emulator = KubernetesEmulator(
            local_state_dir(repo),
            source=None,  # read-only: no Flux/Argo stand-in sync
            secret_name=settings.kubernetes.secretName,
            argo_namespace=settings.kubernetes.argoNamespace,
            nodes=local_nodes(settings),
        )
        with emulator:
            cluster = KubernetesCluster.for_url(
                emulator.url, gitops=settings.gitops, secret_name=settings.kubernetes.secretName
            )
            try:
                yield cluster
            finally:
                cluster.close()
        return
    try:
        cluster = KubernetesCluster.from_environment(
            gitops=settings.gitops, secret_name=settings.kubernetes.secretName
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
    with open_cluster(repo, settings, local=local) as cluster:
        cpu, memory = cluster.node_allocatable()
    return parse_quantity(cpu), parse_quantity(memory)
