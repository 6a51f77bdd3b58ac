"""DEMOCTL_PROBE_RESOLVE: the production prober pointed at an ingress (or an emulated one).

Without it the probes can only go to the demos' real hostnames; with it a second
democtl process (or a staging run) probes the ingress that serves them, keeping the
public name in the Host header. Checked with a real HTTP server on loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.providers.probe import HttpxProber
from reconciler.wiring import SetupError, probe_resolve


@pytest.fixture
def ingress() -> Iterator[tuple[str, list[str]]]:
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(f"{self.headers['Host']}{self.path}")
            self.send_response(200 if self.headers["Host"].startswith("demo-a1-") else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hosts
    finally:
        server.shutdown()
        server.server_close()


def test_the_probes_go_where_the_variable_says_with_the_public_host(
    ingress: tuple[str, list[str]],
) -> None:
    base, hosts = ingress
    env = {"DEMOCTL_PROBE_RESOLVE": f" *.splits.network={base} , other.example=https://x.invalid"}
    mapping = probe_resolve(env)
    assert mapping == {"*.splits.network": base, "other.example": "https://x.invalid"}
    with HttpxProber(resolve=mapping, timeout=5) as prober:
        assert prober.probe("https://demo-a1-portal.splits.network") is True
        assert prober.probe("https://demo-b2-api.splits.network/healthz") is False
    # a 503 is probed once more (HttpxProber: the second answer is the verdict)
    assert (
        hosts
        == ["demo-a1-portal.splits.network/health"] + ["demo-b2-api.splits.network/healthz"] * 2
    )


def test_unset_means_the_real_hostnames() -> None:
    assert probe_resolve({}) == {}
    assert HttpxProber(resolve=probe_resolve({})).target("https://demo-a1-portal.splits.network")[
        0
    ] == ("https://demo-a1-portal.splits.network/health")


@pytest.mark.parametrize("value", ["*.splits.network", "=http://x", "*=ftp://x", "*=127.0.0.1"])
def test_a_bad_value_names_the_variable_and_the_rule(value: str) -> None:
    with pytest.raises(SetupError, match=r"DEMOCTL_PROBE_RESOLVE: .*expected HOST=URL"):
        probe_resolve({"DEMOCTL_PROBE_RESOLVE": value})
