"""The Kubernetes adapter retries reads and its idempotent writes briefly (issue 13).

Observing the cluster takes several list calls; single-shot, one failure in any of them
left the whole cycle blind on Kubernetes (the reliability suite's fault test). Checked
against the Kubernetes emulator over HTTP with the real client.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.local.server import Faults
from reconciler.providers.base import ProviderError
from reconciler.providers.kubernetes import KubernetesCluster
from tests.test_kubernetes import CREDENTIALS, SECRET, render


@pytest.mark.parametrize(
    "faults", [Faults(server_error=1.0), Faults(drop=1.0)], ids=["503", "dropped"]
)
def test_a_failing_read_is_tried_four_times_then_reported(tmp_path: Path, faults: Faults) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    with KubernetesEmulator(tmp_path / "s", source=repo, faults=faults) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET)
        with pytest.raises(ProviderError) as caught:
            adapter.list_namespaces()
        assert caught.value.retryable
        assert emu.api_server is not None
        assert emu.api_server.requests["LIST namespaces"] == 4  # one try and three retries
        adapter.close()


def test_a_read_that_fails_once_succeeds(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    with KubernetesEmulator(tmp_path / "s", source=repo) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET)
        assert emu.api_server is not None
        # seed 3: the first draw is below one half (a 503), the next is not
        emu.api_server.set_faults(Faults(server_error=0.5, seed=3))
        adapter.list_namespaces()
        assert emu.api_server.requests["LIST namespaces"] >= 2
        adapter.close()


def test_a_failing_idempotent_write_is_tried_as_a_read_is_then_reported(tmp_path: Path) -> None:
    # server-side apply of the Secret is idempotent: single-shot, one lost answer in a
    # demo's chain of writes held it creating for cycles under faults
    repo = tmp_path / "repo"
    repo.mkdir()
    render(repo, "demo-acme01")
    with KubernetesEmulator(tmp_path / "s", source=repo) as emu:
        adapter = KubernetesCluster.for_url(emu.url, secret_name=SECRET)
        adapter.list_namespaces()
        assert emu.api_server is not None
        before = sum(n for route, n in emu.api_server.requests.items() if "secrets" in route)
        emu.api_server.set_faults(Faults(server_error=1.0))
        with pytest.raises(ProviderError):
            adapter.apply_secret("demo-acme01", SECRET, CREDENTIALS)
        after = sum(n for route, n in emu.api_server.requests.items() if "secrets" in route)
        assert after - before == 4  # as many tries as a read gets, then the error
        adapter.close()
