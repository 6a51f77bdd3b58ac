"""A served local world: emulators started once and shared by several democtl processes.

Owns `world.json` (what `democtl local serve` writes under `<repo>/.democtl/local/`:
the serving pid, the emulators' URLs, the kubeconfig path and the health probes'
mapping, and no secret beyond the fixed local token) and `ServedWorld`, which hands
out the same adapters as `LocalStack` but pointed at another process's emulators.
`find_world` says whether a world is served and alive (its pid runs and its URLs
answer); a stale file is reported and ignored, so the command starts its own.
May import the local stack's adapter builders and the settings model.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from reconciler.local.stack import LOCAL_TOKEN, cluster_adapter, dns_adapter, supabase_adapter
from reconciler.providers.probe import HttpxProber

if TYPE_CHECKING:
    from reconciler.local.stack import LocalStack
    from reconciler.model import Settings
    from reconciler.providers.cloudflare import CloudflareDns
    from reconciler.providers.http import RequestObserver
    from reconciler.providers.kubernetes import KubernetesCluster
    from reconciler.providers.supabase import SupabaseManagementClient

log = logging.getLogger(__name__)

WORLD_FILE = "world.json"
# another repository's commands (or a test's processes) point here to share a world
WORLD_ENV = "DEMOCTL_LOCAL_WORLD"
_URL_KEYS = ("supabase", "cloudflare", "kubernetes", "health")


def world_file(state_dir: Path, env: Mapping[str, str]) -> Path:
    """The world.json a command looks for: DEMOCTL_LOCAL_WORLD, else its own state dir's."""
    given = env.get(WORLD_ENV, "").strip()
    return Path(given) if given else Path(state_dir) / WORLD_FILE


def world_document(stack: LocalStack) -> dict[str, Any]:
    k8s = stack._k8s()
    if stack.supabase is None or stack.cloudflare is None:
        raise RuntimeError("LocalStack is not started; use it as a context manager")
    return {
        "pid": os.getpid(),
        "stateDir": str(stack.state_dir.resolve()),
        "supabase": stack.supabase.url,
        "cloudflare": stack.cloudflare.api_url,
        "kubernetes": k8s.url,
        "health": k8s.health_url,
        "kubeconfig": str(stack.kubeconfig.resolve()),
        # the same syntax as DEMOCTL_PROBE_RESOLVE: every demo host to the health server
        "probeResolve": {"*": k8s.health_url},
        # the emulators check that a token is sent, not which; no credential of anyone's
        "token": LOCAL_TOKEN,
    }


def write_world(stack: LocalStack, path: Path) -> Path:
    """Write world.json atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(world_document(stack), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def remove_world(path: Path) -> None:
    """Remove world.json if this process wrote it (a later serve may have replaced it)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(document, dict) and document.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _answers(url: str) -> bool:
    """Any HTTP answer counts (even an injected fault's 5xx): something serves there.

    Tried a few times, since a world served with DEMOCTL_LOCAL_FAULTS drops connections.
    """
    for _ in range(3):
        try:
            httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            continue
        return True
    return False


@dataclass(frozen=True)
class ServedWorld:
    """Another process's running emulators, with the adapters `LocalStack` hands out."""

    path: Path
    pid: int
    urls: Mapping[str, str]
    kubeconfig: Path
    settings: Settings

    def cluster(self, observer: RequestObserver | None = None) -> KubernetesCluster:
        return cluster_adapter(self.urls["kubernetes"], self.settings, observer)

    def prober(self, *, timeout: float = 5.0) -> HttpxProber:
        return HttpxProber(resolve={"*": self.urls["health"]}, timeout=timeout)

    def supabase_client(self, observer: RequestObserver | None = None) -> SupabaseManagementClient:
        return supabase_adapter(self.urls["supabase"], self.settings, observer)

    def dns(self, observer: RequestObserver | None = None) -> CloudflareDns:
        return dns_adapter(self.urls["cloudflare"], self.settings, observer)


def find_world(state_dir: Path, settings: Settings, env: Mapping[str, str]) -> ServedWorld | None:
    """The served world this command should use, or None (then it starts its own).

    No file: None, silently. A file naming a dead pid, URLs that do not answer or
    content that is not a world: a warning saying so, then None.
    """
    path = world_file(state_dir, env)
    if not path.is_file():
        if env.get(WORLD_ENV, "").strip():
            log.warning("%s=%s: no such file; starting the local emulators", WORLD_ENV, path)
        return None
    try:
        document = json.loads(path.read_text())
        pid = int(document["pid"])
        urls = {key: str(document[key]) for key in _URL_KEYS}
        kubeconfig = Path(str(document["kubeconfig"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s is not a served world (%s); starting the local emulators", path, exc)
        return None
    if not _pid_alive(pid):
        log.warning(
            "%s is stale: its serving process %s is gone; starting the local emulators", path, pid
        )
        return None
    silent = [key for key in ("supabase", "cloudflare", "kubernetes") if not _answers(urls[key])]
    if silent:
        log.warning(
            "%s is stale: the %s emulator(s) do not answer; starting the local emulators",
            path,
            ", ".join(silent),
        )
        return None
    log.info("using the local world served by pid %s (%s)", pid, path)
    return ServedWorld(path, pid, urls, kubeconfig, settings)
