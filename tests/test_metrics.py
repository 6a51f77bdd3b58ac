"""democtl's Prometheus metrics: named by the rules, fed by real cycles and real transports.

A local `democtl reconcile` (real git, the emulators, real PostgreSQL) writes its
metrics file and pushes to a loopback Pushgateway stand-in; the client's own
parser (`text_string_to_metric_families`) reads both. The transport's callback is
checked against the Supabase, Cloudflare and Kubernetes emulators with injected faults, and
`/healthz` with a hand-moved clock.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
from click.testing import CliRunner
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from reconciler.cli import cli
from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.local.postgres import LocalPostgres
from reconciler.local.server import Faults
from reconciler.loop import CycleResult
from reconciler.metrics import Exporter
from reconciler.plan import Observed, Plan
from reconciler.providers.base import ProviderError, RateLimited
from reconciler.providers.budget import RequestBudget
from reconciler.providers.cloudflare import CloudflareDns
from reconciler.providers.http import RetryPolicy, operation_of
from reconciler.providers.kubernetes import KubernetesCluster, request_operation
from reconciler.providers.supabase import RATE_LIMIT, RATE_WINDOW, SupabaseManagementClient
from tests.gitrepo import BASE_TIME
from tests.supabase_support import ORGANIZATION, TOKEN, Sleeps, make_harness
from tests.test_cli_reconcile import NOW, democtl, state_repo

# https://prometheus.io/docs/concepts/data_model/#metric-names-and-labels
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# https://prometheus.io/docs/practices/naming/: base units, as a suffix
UNITS = ("_seconds", "_bytes", "_cores")
UNITLESS = {  # counts of things: the unit is the thing, and it is in the name
    "democtl_cycles",
    "democtl_demos",
    "democtl_demo_failures",
    "democtl_demo_pods_ready",
    "democtl_queue_length",
    "democtl_capacity_demos",
    "democtl_provider_requests",
    "democtl_provider_retries",
    "democtl_provider_rate_limited",
}
# at NOW, 3h after the files landed, demo-acme01 (ttl 2h) has expired before it ever ran
READY = ("demo-rocket", "demo-talentco")


# --- a loopback Pushgateway ---------------------------------------------------------------


@dataclass
class Push:
    method: str
    path: str
    content_type: str
    body: str


@dataclass
class Pushgateway:
    """A stand-in for the Pushgateway's push API, as its README documents it.

    https://github.com/prometheus/pushgateway#api: `PUT` (replace the group) or
    `POST` (replace the pushed names) to `/metrics/job/<JOB>{/<LABEL>/<VALUE>}`,
    a text-format body; "The response code upon success is either 200, 202, or
    400" - 400 when the request is malformed.
    """

    pushes: list[Push] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                self._push()

            def do_POST(self) -> None:
                self._push()

            def _push(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                parts = self.path.split("/")
                # /metrics/job/<job> then label/value pairs
                if parts[:3] != ["", "metrics", "job"] or len(parts) < 4 or len(parts) % 2:
                    return self._reply(400, "bad grouping key")
                try:
                    list(text_string_to_metric_families(body))
                except ValueError as exc:
                    return self._reply(400, f"text format parsing error: {exc}")
                ctype = self.headers.get("Content-Type", "")
                gateway.pushes.append(Push(self.command, self.path, ctype, body))
                gateway.groups[self.path] = body
                return self._reply(200, "")

            def _reply(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@pytest.fixture(scope="module")
def pushgateway() -> Iterator[tuple[Pushgateway, str]]:
    gateway = Pushgateway()
    server = ThreadingHTTPServer(("127.0.0.1", 0), gateway.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Run:
    repo: Path
    text: str
    families: dict[str, Metric]
    output: str


def parse(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.fixture(scope="module")
def local_run(
    tmp_path_factory: pytest.TempPathFactory, pushgateway: tuple[Pushgateway, str]
) -> Iterator[Run]:
    """One local reconcile that brings the three sample demos up, with its metrics."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEMOCTL_LOCAL_COME_UP_SECONDS", "0")
        for name in ("SUPABASE_ACCESS_TOKEN", "CLOUDFLARE_API_TOKEN", "GITHUB_TOKEN"):
            mp.delenv(name, raising=False)
        tmp = tmp_path_factory.mktemp("metrics")
        _, repo = state_repo(tmp)
        out = tmp / "out" / "democtl.prom"
        code, output = democtl(
            repo,
            "reconcile",
            "--local",
            "--push",  # on the checkout, as CI runs it: the files landed at BASE_TIME
            "--wait",
            "60s",
            "--metrics-file",
            str(out),
            "--pushgateway",
            pushgateway[1],
        )
        assert code == 0, output
        text = out.read_text()
        yield Run(repo, text, parse(text), output)


def samples(family: Metric, name: str | None = None, **labels: str) -> list[float]:
    return [
        s.value
        for s in family.samples
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def sum_of(family: Metric, name: str | None = None, **labels: str) -> float:
    return sum(samples(family, name, **labels))


# --- names ------------------------------------------------------------------------------


def test_every_name_follows_the_prometheus_naming_rules(local_run: Run) -> None:
    families = local_run.families
    assert len(families) >= 20
    for name, family in families.items():
        if name.endswith("_created") and name.removesuffix("_created") in families:
            continue  # the client's creation time of a counter or histogram (text format 0.0.4)
        assert METRIC_NAME.match(name) and name.startswith("democtl_"), name
        assert family.documentation, f"{name} has no HELP"
        assert name.endswith(UNITS) or name in UNITLESS, f"{name}: no base unit suffix"
        assert not name.endswith("_total"), f"{name}: the client adds _total to counters"
        for sample in family.samples:
            assert all(LABEL_NAME.match(k) and not k.startswith("__") for k in sample.labels)
            if family.type == "counter":
                assert sample.name in (f"{name}_total", f"{name}_created"), sample.name
            if family.type == "histogram":
                assert sample.name.removeprefix(name) in ("_bucket", "_sum", "_count", "_created")


def test_a_cycle_that_brings_demos_up_is_measured(local_run: Run) -> None:
    f = local_run.families
    assert sum(samples(f["democtl_demos"], phase="ready")) == len(READY)
    assert all(s.labels["type"] and s.labels["profile"] for s in f["democtl_demos"].samples)
    assert samples(f["democtl_cycles"], "democtl_cycles_total", outcome="ok")[0] >= 1
    assert samples(f["democtl_cycle_duration_seconds"], "democtl_cycle_duration_seconds_count")
    # from each file's commit (BASE_TIME) to ready, at --now (+ the seconds --wait took)
    count = sum_of(
        f["democtl_demo_time_to_ready_seconds"], "democtl_demo_time_to_ready_seconds_count"
    )
    total = sum_of(
        f["democtl_demo_time_to_ready_seconds"], "democtl_demo_time_to_ready_seconds_sum"
    )
    landed_to_now = (NOW - BASE_TIME).total_seconds()
    n = len(READY)
    assert count == n and n * landed_to_now <= total <= n * (landed_to_now + 60)
    for demo in READY:
        [left] = samples(f["democtl_demo_expiry_seconds"], demo=demo)
        assert 0 < left < timedelta(days=30).total_seconds()
    created = samples(
        f["democtl_action_duration_seconds"],
        "democtl_action_duration_seconds_count",
        kind="ensure-project",
        outcome="ok",
    )
    assert sum(created) == n
    assert samples(f["democtl_capacity_demos"], state="used") == [n]
    assert samples(f["democtl_capacity_demos"], state="free")[0] >= 0
    assert samples(f["democtl_capacity_cpu_cores"], state="used")[0] > 0
    assert samples(f["democtl_queue_length"]) == [0.0]
    requests = f["democtl_provider_requests"]
    assert sum(samples(requests, provider="supabase")) > 0
    assert sum(samples(requests, provider="cloudflare")) > 0
    assert samples(
        requests, "democtl_provider_requests_total", provider="supabase", operation="create project"
    ) == [n]
    # Cloudflare's SDK names no operation: method and the path's words, never an id
    operations = {
        s.labels["operation"] for s in requests.samples if s.labels["provider"] == "cloudflare"
    }
    assert "GET zones/dns_records" in operations, operations
    assert all(not re.search(r"[0-9a-f]{16}", op) for op in operations), operations
    # Kubernetes: by verb and resource, as the API server names them; never a namespace
    kubernetes = {
        s.labels["operation"]: s.value
        for s in requests.samples
        if s.labels["provider"] == "kubernetes" and s.name.endswith("_total")
    }
    assert {"list namespaces", "list pods", "list secrets", "patch secrets"} <= set(kubernetes)
    assert all("demo-" not in op for op in kubernetes), kubernetes
    assert (
        sum_of(
            requests,
            "democtl_provider_requests_total",
            provider="kubernetes",
            operation="patch secrets",
        )
        == n
    )  # one server-side apply of each ready demo's Secret


def test_the_pushgateway_gets_the_same_metrics_in_one_put(
    local_run: Run, pushgateway: tuple[Pushgateway, str]
) -> None:
    gateway, _ = pushgateway
    [push] = [p for p in gateway.pushes if p.path == "/metrics/job/democtl"]
    assert push.method == "PUT"  # replaces the group: a demo gone is gone from it too
    assert push.content_type.startswith("text/plain; version=0.0.4")
    assert set(parse(push.body)) == set(local_run.families)


def test_an_unreachable_pushgateway_is_a_warning_not_a_failed_run(
    local_run: Run, tmp_path: Path
) -> None:
    with socketless_port() as url:
        code, output = democtl(
            local_run.repo,
            "reconcile",
            "--local",
            "--metrics-file",
            str(tmp_path / "m.prom"),
            "--pushgateway",
            url,
        )
    assert code == 0, output
    assert f"warning: cannot push metrics to {url}" in output
    assert "democtl_cycles_total" in (tmp_path / "m.prom").read_text()
    assert "Traceback" not in output


def test_a_metrics_file_that_cannot_be_written_exits_2(local_run: Run, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "m.prom"  # under a file, not a folder
    code, output = democtl(local_run.repo, "reconcile", "--local", "--metrics-file", str(path))
    assert code == 2, output
    assert f"--metrics-file {path}: cannot write" in output
    assert "Traceback" not in output


class socketless_port:
    """A loopback URL nobody listens on (bound, never listening, so no one else takes it)."""

    def __enter__(self) -> str:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# --- the transport's callback ---------------------------------------------------------------


def test_supabase_429s_retries_and_retry_after_are_counted(
    tmp_path: Path, supabase_postgres: LocalPostgres
) -> None:
    harness = make_harness(
        tmp_path / "supabase", supabase_postgres, faults=Faults(rate_limit=1.0, retry_after=7)
    )
    exporter = Exporter()
    # the client's waits move the budget's clock, as time passes while a client waits
    sleeps = Sleeps(clock=harness.clock)
    client = SupabaseManagementClient(
        harness.emulator.url,
        TOKEN,
        ORGANIZATION,
        "us-east-1",
        "democtl-",
        retry=RetryPolicy(attempts=4, max_delay=30.0, sleep=sleeps),
        timeout=5.0,
        observer=exporter,
        budget=RequestBudget(limit=RATE_LIMIT, window=RATE_WINDOW, clock=harness.clock),
    )
    try:
        with pytest.raises(RateLimited):
            client.list_projects()
    finally:
        client.close()
        harness.client.close()
        harness.emulator.stop()
    f = parse(exporter.text().decode())
    labels = {"provider": "supabase", "operation": "list projects"}
    assert samples(f["democtl_provider_requests"], code="429", **labels) == [4.0]
    assert samples(
        f["democtl_provider_rate_limited"], "democtl_provider_rate_limited_total", **labels
    ) == [4.0]
    assert samples(f["democtl_provider_retries"], "democtl_provider_retries_total", **labels) == [
        3.0
    ]
    assert sleeps.calls == [7.0, 7.0, 7.0]
    assert samples(
        f["democtl_provider_retry_after_seconds"],
        "democtl_provider_retry_after_seconds_total",
        provider="supabase",
    ) == [21.0]


def test_kubernetes_answers_and_retries_are_counted(tmp_path: Path) -> None:
    exporter = Exporter()
    with KubernetesEmulator(tmp_path / "k8s", source=tmp_path) as emulator:
        cluster = KubernetesCluster.for_url(emulator.url, observer=exporter)
        assert emulator.api_server is not None
        try:
            cluster.list_all_namespaces()
            emulator.api_server.set_faults(Faults(server_error=1.0))
            with pytest.raises(ProviderError):
                cluster.list_all_namespaces()
            # seed 3: the first draw is below one half (a 429), the next is not
            emulator.api_server.set_faults(Faults(rate_limit=0.5, retry_after=1, seed=3))
            cluster.node_allocatable()
        finally:
            cluster.close()
    f = parse(exporter.text().decode())
    requests, listed = f["democtl_provider_requests"], {"provider": "kubernetes"}
    # one answer, then one try and three retries, each a 503
    assert samples(requests, code="200", operation="list namespaces", **listed) == [1.0]
    assert samples(requests, code="503", operation="list namespaces", **listed) == [4.0]
    assert samples(f["democtl_provider_retries"], operation="list namespaces", **listed)[0] == 3.0
    # a short Retry-After is waited out in the transport, and counted as waited
    assert samples(requests, code="429", operation="list nodes", **listed) == [1.0]
    assert samples(requests, code="200", operation="list nodes", **listed) == [1.0]
    assert samples(f["democtl_provider_rate_limited"], operation="list nodes", **listed)[0] == 1
    assert samples(
        f["democtl_provider_retry_after_seconds"],
        "democtl_provider_retry_after_seconds_total",
        **listed,
    ) == [1.0]


@pytest.mark.parametrize(
    "method, path, operation",
    [
        pytest.param("GET", "/api/v1/namespaces?limit=500", "list namespaces", id="list"),
        pytest.param("GET", "/api/v1/namespaces/demo-a", "get namespaces", id="get"),
        pytest.param("GET", "/api/v1/pods?labelSelector=x", "list pods", id="cluster-wide"),
        pytest.param("PATCH", "/api/v1/namespaces/demo-a/secrets/creds", "patch secrets", id="apply"),  # noqa: E501
        pytest.param("DELETE", "/api/v1/namespaces/demo-a/secrets/creds", "delete secrets", id="delete"),  # noqa: E501
        pytest.param("DELETE", "/api/v1/namespaces/demo-a/secrets", "deletecollection secrets", id="collection"),  # noqa: E501
        pytest.param("GET", "/api/v1/namespaces/demo-a/pods/web-1/log", "get pods/log", id="subresource"),  # noqa: E501
        pytest.param("PATCH", "/apis/helm.toolkit.fluxcd.io/v2/namespaces/demo-a/helmreleases/portal", "patch helmreleases", id="group"),  # noqa: E501
        pytest.param("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "create selfsubjectaccessreviews", id="create"),  # noqa: E501
        pytest.param("GET", "/version", "get /version", id="non-resource"),
    ],
)  # fmt: skip
def test_a_kubernetes_request_is_named_by_its_verb_and_resource(
    method: str, path: str, operation: str
) -> None:
    assert request_operation(method, f"https://10.0.0.1:6443{path}") == operation


def test_cloudflare_sdk_retries_are_counted(tmp_path: Path) -> None:
    exporter = Exporter()
    with CloudflareEmulator(tmp_path, zone_name="splits.network", api_token=TOKEN) as emulator:
        dns = CloudflareDns(
            TOKEN, "splits.network", base_url=emulator.api_url, max_retries=1, observer=exporter
        )
        emulator.set_faults(Faults(server_error=1.0))
        try:
            with pytest.raises(ProviderError):
                dns.list_records()
        finally:
            dns.close()
    f = parse(exporter.text().decode())
    [op] = {s.labels["operation"] for s in f["democtl_provider_requests"].samples}
    assert samples(f["democtl_provider_requests"], code="503", provider="cloudflare") == [2.0]
    assert samples(
        f["democtl_provider_retries"], "democtl_provider_retries_total", operation=op
    ) == [1.0]


CF = "https://api.cloudflare.com/client/v4"
ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"


@pytest.mark.parametrize(
    "method, url, operation",
    [
        pytest.param("GET", f"{CF}/zones?name=x", "GET zones", id="zones"),
        pytest.param("GET", f"{CF}/zones/{ZONE_ID}/dns_records", "GET zones/dns_records", id="zone-id-dropped"),  # noqa: E501
        pytest.param("POST", f"{CF}/zones/abc123/dns_records/batch", "POST zones/dns_records/batch", id="batch"),  # noqa: E501
        pytest.param("DELETE", f"{CF}/zones/z1/dns_records/{ZONE_ID}", "DELETE zones/dns_records", id="record-id-dropped"),  # noqa: E501
    ],
)  # fmt: skip
def test_an_unnamed_request_is_named_by_its_method_and_path_words(
    method: str, url: str, operation: str
) -> None:
    assert operation_of(httpx.Request(method, url)) == operation


# --- /metrics and /healthz --------------------------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_healthz_is_503_only_once_cycles_kept_failing_longer_than_allowed() -> None:
    clock = Clock()
    exporter = Exporter(monotonic=clock)
    server = exporter.serve(0, unhealthy_after=300)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    empty = CycleResult(plan=Plan(demos=()), observed=Observed())
    try:
        assert get(f"{base}/healthz")[0] == 200  # no cycle yet: starting is not failing
        exporter.cycle_failed(1.5)
        clock.now += 300
        assert get(f"{base}/healthz")[0] == 200  # failing, not yet for longer than allowed
        exporter.cycle_failed(1.5)  # a second failure does not restart the count
        clock.now += 1
        code, _, body = get(f"{base}/healthz")
        assert code == 503 and "failing" in body
        exporter.record(empty, 2.0)
        assert get(f"{base}/healthz")[0] == 200
        code, ctype, text = get(f"{base}/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        f = parse(text)
        assert samples(f["democtl_cycles"], "democtl_cycles_total", outcome="error") == [2.0]
        assert samples(f["democtl_cycles"], "democtl_cycles_total", outcome="ok") == [1.0]
        assert get(f"{base}/nothing")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_the_last_request_read_by_the_usage_query_is_a_gauge_per_demo() -> None:
    seen = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    observed = Observed(last_accessed={"demo-a": seen, "demo-b": None})
    exporter = Exporter()
    exporter.record(CycleResult(plan=Plan(demos=()), observed=observed), 1.0)
    f = parse(exporter.text().decode())
    family = f["democtl_demo_last_request_timestamp_seconds"]
    assert samples(family, demo="demo-a") == [seen.timestamp()]
    assert samples(family, demo="demo-b") == []  # no request in the window: no timestamp
    exporter.record(CycleResult(plan=Plan(demos=()), observed=Observed()), 1.0)
    family = parse(exporter.text().decode())["democtl_demo_last_request_timestamp_seconds"]
    assert samples(family, demo="demo-a") == []  # a demo no longer asked about goes


def test_each_exporter_has_a_registry_of_its_own() -> None:
    one, two = Exporter(), Exporter()
    one.response("supabase", "list projects", 200)
    assert "list projects" in one.text().decode()
    assert "list projects" not in two.text().decode()


# --- the Grafana dashboard -------------------------------------------------------------

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "democtl.json"
# Grafana's global variables, replaced before a query is sent, so before it is parsed
# (https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/#global-variables)
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d"}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def metric_names(node: Any) -> Iterator[str]:
    """Every metric a parsed PromQL expression selects."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node.name
        return
    for attribute in ("expr", "lhs", "rhs", "vector_selector", "param"):
        child = getattr(node, attribute, None)
        if isinstance(child, promql_parser.Expr):
            yield from metric_names(child)
    for arg in getattr(node, "args", None) or ():
        yield from metric_names(arg)


def exported_series(families: dict[str, Metric]) -> set[str]:
    """The series names a registry's families are scraped as (counters _total, ...)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {name + suffix for name, f in families.items() for suffix in suffixes.get(f.type, ("",))}


def test_the_dashboard_is_importable_with_the_datasource_as_a_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])  # Grafana's uid limit
    assert "id" not in dashboard  # an id would tie it to one Grafana instance
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_panel_query_parses_and_names_only_metrics_democtl_exports(local_run: Run) -> None:
    exported = exported_series(local_run.families)
    used: set[str] = set()
    titles: list[str] = []
    for panel in panels(json.loads(DASHBOARD.read_text())):
        titles.append(panel["title"])
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            names = set(metric_names(promql_parser.parse(expr)))  # raises if it does not parse
            assert names and names <= exported, f"{panel['title']}: {names - exported}"
            used |= names
    # the panels the brief asks for are there
    for wanted in ("Demos by phase", "to ready", "Cycle duration", "errors", "Rate limits"):
        assert any(wanted in title for title in titles), wanted
    assert "democtl_capacity_demos" in used
    # a panel of one provider's requests names a provider that has them
    providers = {
        s.labels["provider"] for s in local_run.families["democtl_provider_requests"].samples
    }
    named = set(re.findall(r'provider="([^"]+)"', DASHBOARD.read_text().replace('\\"', '"')))
    assert named and named <= providers, named - providers


# --- --log-format json, end to end ------------------------------------------------------


def test_a_cycle_logs_json_lines_with_demo_action_outcome_duration_and_cycle(
    local_run: Run,
) -> None:
    args = ["--log-format", "json", "-v", "reconcile", "--local", "--repo", str(local_run.repo)]
    result = CliRunner().invoke(cli, [*args, "--now", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no log lines"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    per_demo = [line for line in lines if line.get("demo") in READY and "outcome" in line]
    assert {line["demo"] for line in per_demo} == set(READY), lines
    for line in per_demo:
        assert line["action"] and line["outcome"] == "ok" and line["duration"] >= 0
        assert re.fullmatch(r"\d{8}T\d{6}Z-1", line["cycle"])
    [summary] = [line for line in lines if line["message"].startswith("cycle: ")]
    assert summary["cycle"] == per_demo[0]["cycle"] and summary["outcome"] == "ok"
