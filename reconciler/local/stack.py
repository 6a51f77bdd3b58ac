"""The local world of `--local`: the emulators started on loopback for one command.

Owns `LocalStack`, a context manager that starts the emulators with their state
under `<repo>/.democtl/local/` (git-ignored), writes a kubeconfig pointing at the
Kubernetes emulator (so `KUBECONFIG=<state>/kubeconfig` works for any client
while the stack runs), and hands out adapters already pointed at them.
Today it wires the Kubernetes emulator and its health endpoints; the Supabase
and Cloudflare emulators join through `_start_supabase` / `_start_cloudflare`
(see the comments there). May import the emulators, the adapters and the settings model.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from reconciler.local.kubernetes_emulator import KubernetesEmulator
from reconciler.local.server import Faults
from reconciler.model import Settings
from reconciler.providers.kubernetes import KubernetesCluster
from reconciler.providers.probe import HttpxProber

log = logging.getLogger(__name__)

STATE_DIR = Path(".democtl") / "local"
KUBECONFIG_FILE = "kubeconfig"


def local_state_dir(repo: Path) -> Path:
    """Where the emulators of a state repository keep their world between commands."""
    return repo / STATE_DIR


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


def local_nodes(settings: Settings) -> dict[str, tuple[str, str]]:
    """The emulated cluster is one node of the size the settings declare."""
    return {"democtl-local": (str(settings.capacity.totalCpu), str(settings.capacity.totalMemory))}


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
    ) -> None:
        self.state_dir = Path(state_dir)
        self.repo = Path(repo)
        self.settings = settings
        self.faults = faults
        self.nodes = nodes
        self._exit = ExitStack()
        self.kubernetes: KubernetesEmulator | None = None
        # The lead adds `self.supabase` and `self.cloudflare` with their emulators.

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / KUBECONFIG_FILE

    def __enter__(self) -> LocalStack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
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
            source=self.repo,
            faults=self.faults,
            domain=settings.domain,
            url_patterns=(settings.urls.portal, settings.urls.candidate, settings.urls.api),
            secret_name=settings.kubernetes.secretName,
            argo_namespace=settings.kubernetes.argoNamespace,
            nodes=self.nodes or local_nodes(settings),
        )
        self.kubernetes = self._exit.enter_context(emulator)
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(emulator.url)))
        log.info("local kubernetes emulator at %s (health %s)", emulator.url, emulator.health_url)

    def _start_supabase(self) -> None:
        """Seam: start `reconciler.local.supabase_emulator.SupabaseEmulator` here.

        Enter it on `self._exit` with `self.state_dir`, `self.faults`, and expose it as
        `self.supabase`; add its adapter factory next to `cluster()` below.
        """

    def _start_cloudflare(self) -> None:
        """Seam: start `reconciler.local.cloudflare_emulator.CloudflareEmulator` here.

        Same shape as `_start_supabase`: `self.cloudflare`, plus a `dns()` factory.
        """

    # --- adapters pointed at the emulators ------------------------------------------------

    def _k8s(self) -> KubernetesEmulator:
        if self.kubernetes is None:
            raise RuntimeError("LocalStack is not started; use it as a context manager")
        return self.kubernetes

    def cluster(self) -> KubernetesCluster:
        return KubernetesCluster.for_url(
            self._k8s().url,
            gitops=self.settings.gitops,
            secret_name=self.settings.kubernetes.secretName,
        )

    def prober(self, *, timeout: float = 5.0) -> HttpxProber:
        """Every host resolves to the emulator's health server, which routes by Host."""
        return HttpxProber(resolve={"*": self._k8s().health_url}, timeout=timeout)

    def inspect(self) -> dict[str, Any]:
        return {"kubernetes": self._k8s().inspect()}


def inspect_state(state_dir: Path) -> dict[str, Any]:
    """The persisted local world, read without starting any server."""
    return {"kubernetes": KubernetesEmulator(state_dir, source=None).inspect()}
