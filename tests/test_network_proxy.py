"""democtl reaches the real services the way the user's network does: through
HTTPS_PROXY/HTTP_PROXY (not for NO_PROXY hosts), trusting SSL_CERT_FILE; loopback
(the emulators) always directly.

A tiny proxy on 127.0.0.1 (CONNECT tunnels and absolute-form HTTP) is the only way to
names under `proxied.test`: it resolves them to loopback, where the emulators listen,
and records every target it was asked for. Nothing else resolves those names, so a
request that reaches the emulator by such a name went through the proxy.
"""

from __future__ import annotations

import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.local.postgres import LocalPostgres
from reconciler.local.server import EmulatorServer, Request, Response
from reconciler.local.supabase_emulator import SupabaseEmulator
from reconciler.providers.base import ProviderError
from reconciler.providers.cloudflare import CloudflareDns
from reconciler.providers.http import Network, RetryPolicy
from reconciler.providers.kubernetes import KubernetesCluster
from reconciler.providers.probe import HttpxProber
from reconciler.providers.supabase import SupabaseManagementClient
from tests.supabase_support import ORGANIZATION, TOKEN, ManualClock

DOMAIN = "proxied.test"  # reserved (RFC 2606): resolves nowhere but in the proxy


# --- the proxy --------------------------------------------------------------------------


@dataclass
class Proxy:
    url: str
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, host)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 5.0)
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (b if source is a else a).sendall(data)


def _serve_proxy(seen: list[tuple[str, str]]) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            client: socket.socket = self.request
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            authority = target if method == "CONNECT" else target.split("/")[2]
            host, _, port = authority.rpartition(":")
            seen.append((method, host))
            if not (host.endswith("." + DOMAIN) or host == "127.0.0.1"):
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection(("127.0.0.1", int(port)))
            with upstream:
                if method == "CONNECT":
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    rest = head.split(b"\r\n\r\n", 1)[1]
                else:
                    # absolute-form: the emulators read only the path of the target
                    rest = head
                if rest:
                    upstream.sendall(rest)
                _pipe(client, upstream)

    return Handler


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    seen: list[tuple[str, str]] = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _serve_proxy(seen))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Proxy(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- a certificate for *.proxied.test, trusted only through SSL_CERT_FILE ---------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN=api.{DOMAIN}",
         "-addext", f"subjectAltName=DNS:api.{DOMAIN},DNS:*.{DOMAIN}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_supabase(
    tmp_path: Path, supabase_postgres: LocalPostgres, certificate: tuple[Path, Path]
) -> Iterator[SupabaseEmulator]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    emulator = SupabaseEmulator(
        tmp_path / "supabase",
        supabase_postgres,
        clock=ManualClock(),
        organizations=(ORGANIZATION,),
        tls=context,
    )
    with emulator:
        yield emulator


def _supabase(base_url: str, network: Network | None) -> SupabaseManagementClient:
    return SupabaseManagementClient(
        base_url, TOKEN, ORGANIZATION, "us-east-1", "democtl-",
        retry=RetryPolicy.no_wait(attempts=1), timeout=5.0, network=network,
    )  # fmt: skip


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


# --- httpx: the Supabase adapter --------------------------------------------------------


def test_supabase_goes_through_https_proxy_trusting_ssl_cert_file(
    https_supabase: SupabaseEmulator, proxy: Proxy, certificate: tuple[Path, Path]
) -> None:
    network = Network.from_environ({"HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": str(certificate[0])})
    with _supabase(f"https://api.{DOMAIN}:{_port(https_supabase.url)}", network) as client:
        assert client.list_projects() == []
    assert proxy.seen == [("CONNECT", f"api.{DOMAIN}")]
    assert https_supabase.requests["GET /v1/projects"] == 1


def test_supabase_reads_the_proxy_and_ca_from_the_process_environment(
    https_supabase: SupabaseEmulator,
    proxy: Proxy,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with _supabase(f"https://api.{DOMAIN}:{_port(https_supabase.url)}", None) as client:
        assert client.list_projects() == []
    assert proxy.seen == [("CONNECT", f"api.{DOMAIN}")]


def test_without_ssl_cert_file_the_proxied_certificate_is_not_trusted(
    https_supabase: SupabaseEmulator, proxy: Proxy
) -> None:
    network = Network.from_environ({"HTTPS_PROXY": proxy.url})
    with (
        _supabase(f"https://api.{DOMAIN}:{_port(https_supabase.url)}", network) as client,
        pytest.raises(ProviderError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.list_projects()
    assert proxy.seen == [("CONNECT", f"api.{DOMAIN}")]


@pytest.mark.parametrize("no_proxy", [DOMAIN, f".{DOMAIN}", f"*.{DOMAIN}", "*"])
def test_no_proxy_hosts_are_reached_directly(
    https_supabase: SupabaseEmulator, proxy: Proxy, certificate: tuple[Path, Path], no_proxy: str
) -> None:
    network = Network.from_environ(
        {"HTTPS_PROXY": proxy.url, "NO_PROXY": f"example.org,{no_proxy}",
         "SSL_CERT_FILE": str(certificate[0])}
    )  # fmt: skip
    with (
        _supabase(f"https://api.{DOMAIN}:{_port(https_supabase.url)}", network) as client,
        pytest.raises(ProviderError, match="ConnectError"),  # the name resolves nowhere
    ):
        client.list_projects()
    assert proxy.seen == []
    assert network.proxy_for(f"https://api.{DOMAIN}/") is None


def test_a_loopback_emulator_is_never_proxied(
    tmp_path: Path, supabase_postgres: LocalPostgres, proxy: Proxy
) -> None:
    network = Network.from_environ({"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url})
    emulator = SupabaseEmulator(
        tmp_path / "sb", supabase_postgres, clock=ManualClock(), organizations=(ORGANIZATION,)
    )
    with emulator:
        for base in (emulator.url, emulator.url.replace("127.0.0.1", "localhost")):
            with _supabase(base, network) as client:
                assert client.list_projects() == []
    assert proxy.seen == []
    assert emulator.requests["GET /v1/projects"] == 2


@pytest.mark.parametrize(
    "url, expected",
    [
        pytest.param("https://api.supabase.com/v1", "https-proxy", id="https"),
        pytest.param("http://status.example.org/", "http-proxy", id="http"),
        pytest.param("https://db.internal.corp/", None, id="no-proxy-domain"),
        pytest.param("https://10.1.2.3/", None, id="no-proxy-cidr"),
        pytest.param("http://127.0.0.1:8080/", None, id="loopback"),
        pytest.param("http://[::1]:8080/", None, id="loopback-v6"),
        pytest.param("http://abc.supabase.localhost/", None, id="localhost-domain"),
    ],
)
def test_which_urls_go_through_which_proxy(url: str, expected: str | None) -> None:
    network = Network.from_environ(
        {"HTTPS_PROXY": "https-proxy", "http_proxy": "http-proxy",
         "NO_PROXY": "internal.corp, 10.0.0.0/8"}
    )  # fmt: skip
    assert network.proxy_for(url) == expected


def test_all_proxy_is_the_fallback_and_lower_case_wins() -> None:
    network = Network.from_environ(
        {"ALL_PROXY": "all", "HTTPS_PROXY": "upper", "https_proxy": "lower"}
    )
    assert network.https_proxy == "lower" and network.http_proxy == "all"


# --- the Cloudflare SDK -----------------------------------------------------------------


def test_the_cloudflare_sdk_goes_through_the_proxy(tmp_path: Path, proxy: Proxy) -> None:
    zone = "demo.example.com"
    with CloudflareEmulator(tmp_path / "cf", zone_name=zone) as emulator:
        base = f"http://cf.{DOMAIN}:{_port(emulator.url)}/client/v4"
        network = Network.from_environ({"HTTP_PROXY": proxy.url})
        with CloudflareDns(TOKEN, zone, base_url=base, network=network) as dns:
            assert dns.list_records() == []
        assert ("GET", f"cf.{DOMAIN}") in proxy.seen
        seen = len(proxy.seen)
        with CloudflareDns(TOKEN, zone, base_url=emulator.api_url, network=network) as dns:
            assert dns.list_records() == []  # loopback: direct
        assert len(proxy.seen) == seen


# --- health probes ----------------------------------------------------------------------


def test_probes_of_public_hosts_go_through_the_proxy_local_ones_do_not(proxy: Proxy) -> None:
    def healthy(request: Request) -> Response:
        return Response(200, {"ok": True, "host": request.headers.get("host")})

    with EmulatorServer("health", healthy) as server:
        network = Network.from_environ({"HTTP_PROXY": proxy.url})
        with HttpxProber(network=network) as prober:
            assert prober.probe(f"http://portal.{DOMAIN}:{_port(server.url)}/health")
        assert proxy.seen == [("GET", f"portal.{DOMAIN}")]
        with HttpxProber(resolve={"*": server.url}, network=network) as local:
            assert local.probe(f"https://demo-a-portal.{DOMAIN}")  # resolved to loopback
        assert proxy.seen == [("GET", f"portal.{DOMAIN}")]


# --- the Kubernetes client --------------------------------------------------------------


def _kubeconfig(path: Path, server: str, proxy_url: str | None = None) -> Path:
    cluster: dict[str, str] = {"server": server}
    if proxy_url:
        cluster["proxy-url"] = proxy_url
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.mark.parametrize("how", ["kubeconfig-proxy-url", "environment"])
def test_the_kubernetes_client_goes_through_the_proxy(
    tmp_path: Path, proxy: Proxy, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    with KubernetesEmulator(tmp_path / "k8s") as emulator:
        server = f"http://k8s.{DOMAIN}:{_port(emulator.url)}"
        if how == "environment":
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            config = _kubeconfig(tmp_path / "kubeconfig", server)
        else:
            config = _kubeconfig(tmp_path / "kubeconfig", server, proxy.url)
        monkeypatch.setenv("KUBECONFIG", str(config))
        cluster = KubernetesCluster.from_environment()
        try:
            assert cluster.list_namespaces() == []
        finally:
            cluster.close()
        assert proxy.seen and set(proxy.seen) == {("GET", f"k8s.{DOMAIN}")}

        # the emulator by its loopback address: direct, whatever the environment says
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "local", emulator.url)))
        seen = len(proxy.seen)
        local = KubernetesCluster.from_environment()
        try:
            assert local.list_namespaces() == []
        finally:
            local.close()
        assert len(proxy.seen) == seen


def test_the_kubernetes_client_trusts_ssl_cert_file_without_a_kubeconfig_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/corp/ca.pem")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    remote = _kubeconfig(tmp_path / "remote", f"https://k8s.{DOMAIN}:6443")
    monkeypatch.setenv("KUBECONFIG", str(remote))
    cluster = KubernetesCluster.from_environment()
    try:
        assert cluster.api_client.configuration.ssl_ca_cert == "/etc/corp/ca.pem"
    finally:
        cluster.close()
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "local", "http://127.0.0.1:1")))
    local = KubernetesCluster.from_environment()
    try:
        assert local.api_client.configuration.ssl_ca_cert is None
    finally:
        local.close()
