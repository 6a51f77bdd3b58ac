"""The local world of `--local`: the emulators started on loopback for one command.

Owns `LocalStack`, a context manager that starts the emulators with their state
under `<repo>/.democtl/local/` (git-ignored), writes a kubeconfig pointing at the
Kubernetes emulator (so `KUBECONFIG=<state>/kubeconfig` works for any client
while the stack runs), and hands out adapters already pointed at them.
It wires the Kubernetes emulator (with its health endpoints and Flux stand-in),
the Supabase emulator over a local PostgreSQL, and the Cloudflare emulator.

Also owns the local world's lock (`local_lock`: one `--local` command at a time per
repository, the next waits and says so) and `reset` (stop what runs, delete the
world). May import the emulators, the adapters and the settings model.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import yaml

from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.local.kubernetes.access import AccessPolicy
from reconciler.local.postgres import LocalPostgres, discard_cluster
from reconciler.local.server import Faults
from reconciler.local.supabase_emulator import SupabaseEmulator
from reconciler.model import Settings
from reconciler.providers.budget import RequestBudget
from reconciler.providers.cloudflare import CloudflareDns
from reconciler.providers.http import RequestObserver, RetryPolicy
from reconciler.providers.kubernetes import KubernetesCluster, pod_selector_for
from reconciler.providers.probe import HttpxProber
from reconciler.providers.supabase import RATE_LIMIT as SUPABASE_RATE_LIMIT
from reconciler.providers.supabase import RATE_WINDOW as SUPABASE_RATE_WINDOW
from reconciler.providers.supabase import SupabaseManagementClient

log = logging.getLogger(__name__)

KUBECONFIG_FILE = "kubeconfig"
LOCK_FILE = "lock"
# The emulators check that a token is sent, not which: local mode needs no credentials.
LOCAL_TOKEN = "democtl-local"  # noqa: S105
LOCAL_PROJECT_URL = "http://{ref}.supabase.localhost"


def ignore_state_dir(state_dir: Path) -> None:
    """Make `.democtl/` ignore itself, so a state repository without that rule stays clean."""
    marker = state_dir.parent / ".gitignore"
    if not marker.exists():
        marker.write_text(
            "# Created by democtl --local: the emulators' state, never committed.\n*\n"
        )


# --- one --local command at a time -------------------------------------------------------


@dataclass
class _Hold:
    handle: IO[str]
    count: int = 0  # nested local_lock() in this process
    handed_over: int = 0  # acquisitions that the next local_lock() exit releases


_holds: dict[Path, _Hold] = {}
_holds_guard = threading.Lock()  # guards _holds


def _lock_path(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / LOCK_FILE


def _open_locked(path: Path) -> IO[str]:
    """Open `path` and hold an exclusive flock on it; wait, saying so, while another
    process holds it. A lock file deleted meanwhile (`reset`) is opened again: a lock on
    a file no longer at `path` would exclude no one."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            log.warning("another democtl --local is running (pid %s); waiting", holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()


def acquire_local_lock(state_dir: Path, *, hand_over: bool = False) -> None:
    """Take the local world's lock (re-entrant within a process).

    `hand_over`: the caller cannot hold a context open (it returns a path the command
    uses next), so the release is left to the exit of the next `local_lock` in this
    process, the one that opens the providers; the command's process exit releases it
    otherwise.
    """
    key = _lock_path(state_dir)
    # one guard for the whole acquisition: within a process the lock is shared, so only
    # the first taker opens the file (a second flock here would wait on ourselves)
    with _holds_guard:
        hold = _holds.get(key)
        if hold is None:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
            ignore_state_dir(Path(state_dir))
            hold = _holds[key] = _Hold(_open_locked(key))
        if hand_over:
            hold.handed_over += 1
        else:
            hold.count += 1


def release_local_lock(state_dir: Path, *, handed_over: bool = False) -> None:
    key = _lock_path(state_dir)
    with _holds_guard:
        hold = _holds.get(key)
        if hold is None:
            return
        if handed_over:
            hold.handed_over = max(0, hold.handed_over - 1)
        else:
            hold.count = max(0, hold.count - 1)
            if hold.count == 0:
                hold.handed_over = 0  # the providers are closed: the hand-over is done
        if hold.count or hold.handed_over:
            return
        del _holds[key]
    fcntl.flock(hold.handle, fcntl.LOCK_UN)
    hold.handle.close()


@contextlib.contextmanager
def local_lock(state_dir: Path) -> Iterator[None]:
    """Hold the lock of the local world under `state_dir` for the block.

    Two `--local` commands at once would share one scratch git repository (index.lock
    errors) and one emulator state: the second waits for the first, with a line saying
    which process it waits for. Re-entrant: a command that holds it may take it again.
    """
    acquire_local_lock(state_dir)
    try:
        yield
    finally:
        release_local_lock(state_dir)


def reset(state_dir: Path) -> bool:
    """Start the local world afresh: wait for a running `--local` command, stop the local
    PostgreSQL (whoever started it) and delete `state_dir` with everything under it,
    and the cluster's data wherever it lives. False when there was nothing to reset.

    The emulators other than PostgreSQL run inside the command that serves them, so
    nothing else outlives a command.
    """
    state_dir = Path(state_dir)
    if not state_dir.exists():
        return False
    with local_lock(state_dir):
        discard_cluster(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
    log.info("local world under %s deleted", state_dir)
    return True


def kubeconfig_document(server: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "democtl-local", "cluster": {"server": server}}],
        "users": [{"name": "democtl-local", "user": {"token": "democtl-local"}}],
        "contexts": [
            {
                "name": "democtl-local",
                "context": {"cluster": "democtl-local", "user": "democtl-local"},
            }
        ],
        "current-context": "democtl-local",
    }


def local_access(settings: Settings) -> AccessPolicy:
    """The emulated cluster grants everything and has, besides kube-system and the like,
    the ingress controller's namespace and the GitOps controller's, as a prepared cluster."""
    k8s = settings.kubernetes
    gitops = k8s.fluxNamespace if settings.gitops == "flux" else k8s.argoNamespace
    return AccessPolicy.with_namespaces((k8s.ingressNamespace, gitops))


def local_nodes(settings: Settings) -> dict[str, tuple[str, str]]:
    """The emulated cluster is one node of the size the settings declare."""
    return {"democtl-local": (str(settings.capacity.totalCpu), str(settings.capacity.totalMemory))}


def cluster_adapter(
    url: str, settings: Settings, observer: RequestObserver | None = None
) -> KubernetesCluster:
    """The Kubernetes adapter pointed at an emulator (this process's or a served one)."""
    return KubernetesCluster.for_url(
        url,
        observer=observer,
        gitops=settings.gitops,
        secret_name=settings.kubernetes.secretName,
        pod_selector=pod_selector_for(settings.kubernetes.podSelector),
        owner=settings.owner,
        qps=settings.kubernetes.clientQps,
        burst=settings.kubernetes.clientBurst,
    )


def supabase_adapter(
    url: str,
    settings: Settings,
    observer: RequestObserver | None = None,
    clock: Callable[[], float] = time.time,
) -> SupabaseManagementClient:
    """`clock`: the emulator's (it counts its rate-limit windows on the local world's
    clock; a budget on another clock would wait out windows that are long over)."""
    sb = settings.supabase
    return SupabaseManagementClient(
        url,
        LOCAL_TOKEN,
        sb.organization,
        sb.region,
        sb.projectPrefix,
        retry=RetryPolicy(attempts=4, base_delay=0.2, max_delay=2.0),
        instance_size=sb.size,
        # stable across commands (the emulator's port is not): it lands in status files
        project_url_template=LOCAL_PROJECT_URL,
        owner=settings.owner,
        observer=observer,
        budget=RequestBudget(limit=SUPABASE_RATE_LIMIT, window=SUPABASE_RATE_WINDOW, clock=clock),
    )


def dns_adapter(
    url: str, settings: Settings, observer: RequestObserver | None = None
) -> CloudflareDns:
    return CloudflareDns(
        LOCAL_TOKEN,
        settings.cloudflare.zone,
        base_url=url,
        max_retries=2,
        owner=settings.owner,
        observer=observer,
    )


class LocalStack:
    """Start with `with LocalStack(state_dir, repo, settings) as stack:`; stop on exit."""

    def __init__(
        self,
        state_dir: Path,
        repo: Path,
        settings: Settings,
        *,
        faults: Faults | None = None,
        nodes: dict[str, tuple[str, str]] | None = None,
        come_up_seconds: float = 2.0,
        database_lag_seconds: float = 0.5,
        going_down_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
        gitops_source: bool = True,
        spare_databases: int = 0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.repo = Path(repo)
        # False: serve the persisted cluster without syncing `repo`'s rendered/ (a command
        # that must not change the emulated world, such as doctor)
        self.gitops_source = gitops_source
        self.settings = settings
        self.faults = faults
        self.nodes = nodes
        self.come_up_seconds = come_up_seconds
        self.database_lag_seconds = database_lag_seconds
        self.going_down_seconds = going_down_seconds
        self.clock = clock  # the Supabase emulator's time (tests drive its life cycle)
        # blank databases the Supabase emulator keeps made ahead (`local serve
        # --spare-databases`): a project then costs a rename, not a copy of template1
        self.spare_databases = spare_databases
        self._exit = ExitStack()
        self.kubernetes: KubernetesEmulator | None = None
        self.postgres: LocalPostgres | None = None
        self.supabase: SupabaseEmulator | None = None
        self.cloudflare: CloudflareEmulator | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / KUBECONFIG_FILE

    def __enter__(self) -> LocalStack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ignore_state_dir(self.state_dir)
        # the world is one command's at a time (re-entrant: the command may hold it already)
        self._exit.enter_context(local_lock(self.state_dir))
        try:
            self._start_kubernetes()
            self._start_supabase()
            self._start_cloudflare()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    # --- emulators ------------------------------------------------------------------------

    def _start_kubernetes(self) -> None:
        settings = self.settings
        emulator = KubernetesEmulator(
            self.state_dir,
            source=self.repo if self.gitops_source else None,
            faults=self.faults,
            domain=settings.domain,
            url_patterns=(settings.urls.portal, settings.urls.candidate, settings.urls.api),
            secret_name=settings.kubernetes.secretName,
            argo_namespace=settings.kubernetes.argoNamespace,
            gitops=settings.gitops,
            nodes=self.nodes or local_nodes(settings),
            # one clock for the local world: the release controllers' intervals follow it
            clock=lambda: datetime.fromtimestamp(self.clock(), UTC).replace(microsecond=0),
            access=local_access(settings),
        )
        self.kubernetes = self._exit.enter_context(emulator)
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(emulator.url)))
        log.info("local kubernetes emulator at %s (health %s)", emulator.url, emulator.health_url)

    def _start_supabase(self) -> None:
        # projects are real databases in one PostgreSQL cluster kept under the state dir
        self.postgres = self._exit.enter_context(LocalPostgres(self.state_dir))
        emulator = SupabaseEmulator(
            self.state_dir,
            self.postgres,
            clock=self.clock,
            come_up_seconds=self.come_up_seconds,
            # the token of local mode is a member of the settings' organisation only
            organizations=(self.settings.supabase.organization,),
            database_lag_seconds=self.database_lag_seconds,
            going_down_seconds=self.going_down_seconds,
            faults=self.faults,
            spare_databases=self.spare_databases,
        )
        self.supabase = self._exit.enter_context(emulator)
        log.info("local supabase emulator at %s", emulator.url)

    def _start_cloudflare(self) -> None:
        emulator = CloudflareEmulator(
            self.state_dir, zone_name=self.settings.cloudflare.zone, faults=self.faults
        )
        self.cloudflare = self._exit.enter_context(emulator)
        log.info("local cloudflare emulator at %s", emulator.api_url)

    # --- adapters pointed at the emulators ------------------------------------------------

    def _k8s(self) -> KubernetesEmulator:
        if self.kubernetes is None:
            raise RuntimeError("LocalStack is not started; use it as a context manager")
        return self.kubernetes

    def cluster(self, observer: RequestObserver | None = None) -> KubernetesCluster:
        return cluster_adapter(self._k8s().url, self.settings, observer)

    def prober(self, *, timeout: float = 5.0) -> HttpxProber:
        """Every host resolves to the emulator's health server, which routes by Host."""
        return HttpxProber(resolve={"*": self._k8s().health_url}, timeout=timeout)

    def supabase_client(self, observer: RequestObserver | None = None) -> SupabaseManagementClient:
        if self.supabase is None:
            raise RuntimeError("LocalStack is not started; use it as a context manager")
        return supabase_adapter(self.supabase.url, self.settings, observer, self.clock)

    def dns(self, observer: RequestObserver | None = None) -> CloudflareDns:
        if self.cloudflare is None:
            raise RuntimeError("LocalStack is not started; use it as a context manager")
        return dns_adapter(self.cloudflare.api_url, self.settings, observer)

    def secret_values(self) -> list[str]:
        """Every value held in the emulated cluster's Secrets (tests look for leaks)."""
        values: list[str] = []
        for data in self._k8s().secret_data():
            for encoded in data.values():
                values.append(base64.b64decode(encoded).decode(errors="replace"))
        return values

    def inspect(self) -> dict[str, Any]:
        world: dict[str, Any] = {"kubernetes": self._k8s().inspect()}
        if self.supabase is not None:
            world["supabase"] = self.supabase.inspect()
        if self.cloudflare is not None:
            world["cloudflare"] = self.cloudflare.inspect()
        return world


def inspect_state(state_dir: Path, settings: Settings | None = None) -> dict[str, Any]:
    """The persisted local world, read without serving any API.

    The Supabase part needs the local PostgreSQL (to count rows): this attaches to
    a running one (a reconcile's) or starts it, and on leaving stops it only when no
    other command uses it. No lock: reading must not wait for a long `run --every`.
    """
    world: dict[str, Any] = {"kubernetes": KubernetesEmulator(state_dir, source=None).inspect()}
    if settings is not None:
        world["cloudflare"] = CloudflareEmulator(
            state_dir, zone_name=settings.cloudflare.zone
        ).inspect()
    if (state_dir / "supabase.json").is_file():
        with LocalPostgres(state_dir) as postgres:
            world["supabase"] = SupabaseEmulator(state_dir, postgres, clock=time.time).inspect()
    return world
