"""Usage and idle reaping: the Prometheus adapter against a loopback stand-in of the query
API, the idle rule as a truth table, and cycles on a real git repository."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from reconciler.loop import CycleOptions, run_cycle
from reconciler.model import DemoStatus, Phase, Settings
from reconciler.plan.idle import idle_verdict, usage_query
from reconciler.providers.base import ProviderError
from reconciler.providers.prometheus import PrometheusUsage
from reconciler.validate import load_demo
from tests.fakes import World
from tests.gitrepo import (
    BASE_TIME,
    commit_as,
    demo_yaml,
    log_subjects,
    make_status,
    origin_and_clone,
    sample_settings,
)
from tests.prometheus_standin import PrometheusStandIn

A = "demo-acme01"


def settings_bytes(url: str = "http://127.0.0.1:9090", idle: str | None = "30m") -> bytes:
    data = yaml.safe_load(sample_settings())
    if idle is not None:
        data["profiles"]["small"]["idleAfter"] = idle
    data["usage"] = {"prometheusUrl": url}
    return yaml.safe_dump(data, sort_keys=False).encode()


SETTINGS = Settings.model_validate(yaml.safe_load(settings_bytes()))
_LOADED = load_demo(f"demos/{A}.yaml", demo_yaml(A).encode())
assert _LOADED.demo is not None
DEMO = _LOADED.demo


def at(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def live(phase: Phase = Phase.READY) -> DemoStatus:
    return make_status(A, phase)


@pytest.mark.parametrize(
    "status, seen, minutes, idle",
    [
        pytest.param(live(), {A: at(50)}, 60, False, id="a-request-10m-ago-is-not-idle"),
        pytest.param(live(), {A: at(25)}, 60, True, id="no-request-for-35m-is-idle"),
        pytest.param(live(), {A: None}, 60, True, id="no-request-in-the-window-is-idle"),
        pytest.param(live(), {A: None}, 20, False, id="never-one-younger-than-the-rule"),
        pytest.param(live(), {}, 600, False, id="a-failed-read-is-no-verdict"),
        pytest.param(live(Phase.DEGRADED), {A: None}, 60, True, id="degraded-is-live-too"),
        pytest.param(live(Phase.CREATING), {A: None}, 60, False, id="creating-is-not-judged"),
        pytest.param(None, {A: None}, 60, False, id="nothing-running-nothing-to-judge"),
    ],
)
def test_idle_verdict(
    status: DemoStatus | None, seen: dict[str, datetime | None], minutes: float, idle: bool
) -> None:
    why = idle_verdict(SETTINGS, DEMO, status, BASE_TIME, seen, at(minutes))
    assert (why is not None) == idle
    if why:
        assert "idleAfter of profile small" in why


def test_no_rule_without_idle_after() -> None:
    plain = Settings.model_validate(yaml.safe_load(settings_bytes(idle=None)))
    assert idle_verdict(plain, DEMO, live(), BASE_TIME, {A: None}, at(600)) is None


def test_usage_query_fills_the_template() -> None:
    query = usage_query(SETTINGS, A, "small")
    assert query is not None
    assert f'namespace="{A}"' in query and "[1800s:1m]" in query
    custom = SETTINGS.model_copy(
        update={"usage": SETTINGS.usage.model_copy(update={"query": 'x{host="$host"}[$window]'})}  # type: ignore[union-attr]
    )
    assert usage_query(custom, A, "small") == f'x{{host="{A}-portal.splits.network"}}[1800s]'


def test_idle_after_is_no_new_cause_in_the_settings_hash() -> None:
    data = yaml.safe_load(sample_settings())
    assert (
        Settings.model_validate(data).settings_hash()
        == Settings.model_validate(yaml.safe_load(settings_bytes(idle=None))).settings_hash()
    )


# --- the adapter ---------------------------------------------------------------------------


def test_prometheus_reads_the_documented_shapes() -> None:
    with PrometheusStandIn() as prom:
        reader = PrometheusUsage(prom.url)
        query = f'x{{namespace="{A}"}}'
        assert reader.last_request(query, at(60)) is None  # empty vector
        prom.last[A] = at(42)
        assert reader.last_request(query, at(60)) == at(42)
        assert prom.queries[-1] == (query, f"{at(60).timestamp():.3f}")
        prom.raw = (
            200,
            {"status": "success", "data": {"resultType": "scalar", "result": [1, "NaN"]}},
        )
        assert reader.last_request(query, at(60)) is None
        reader.close()


@pytest.mark.parametrize(
    "answer, words",
    [
        pytest.param(
            (503, {"status": "error", "errorType": "unavailable", "error": "not ready"}),
            "503: unavailable: not ready",
            id="unavailable",
        ),
        pytest.param(
            (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
            "bad_data: parse error",
            id="bad-query",
        ),
        pytest.param((200, b"<html>proxy</html>"), "without JSON", id="not-json"),
        pytest.param(
            (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
            "matrix",
            id="a-range-result",
        ),
        pytest.param(
            (
                200,
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [
                            {"metric": {}, "value": [1, "1"]},
                            {"metric": {}, "value": [1, "2"]},
                        ],
                    },
                },
            ),
            "2 series",
            id="two-series",
        ),
        pytest.param(
            (
                200,
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [{"metric": {}, "value": [1, "soon"]}],
                    },
                },
            ),
            "no number",
            id="not-a-number",
        ),
    ],
)
def test_prometheus_answers_that_are_no_verdict_raise(
    answer: tuple[int, object], words: str
) -> None:
    with PrometheusStandIn() as prom:
        prom.raw = answer
        reader = PrometheusUsage(prom.url)
        with pytest.raises(ProviderError, match=words):
            reader.last_request("x", at(60))
        reader.close()


def test_prometheus_that_does_not_answer_raises() -> None:
    reader = PrometheusUsage("http://127.0.0.1:9", timeout=1.0)  # the discard port: refused
    with pytest.raises(ProviderError, match="no answer"):
        reader.last_request("x", at(60))
    reader.close()


# --- cycles -------------------------------------------------------------------------------


def cycle(repo: Path, world: World, prom: PrometheusStandIn, minutes: float):  # type: ignore[no-untyped-def]
    providers = replace(world.providers(), usage=PrometheusUsage(prom.url))
    try:
        return run_cycle(repo, providers, at(minutes), CycleOptions())
    finally:
        providers.usage.close()


def status_of(repo: Path) -> dict[str, object]:
    return yaml.safe_load((repo / "status" / f"{A}.yaml").read_text())


def ready_repo(tmp_path: Path, world: World, prom: PrometheusStandIn) -> Path:
    _, repo = origin_and_clone(tmp_path, files={"reconciler.yaml": settings_bytes(prom.url)})
    commit_as(repo, when=BASE_TIME, files={f"demos/{A}.yaml": demo_yaml(A, "2h")}, message="add")
    cycle(repo, world, prom, 5)
    world.cluster.sync(A)
    world.supabase.bring_up()
    for minute in (6, 7, 8):
        if cycle(repo, world, prom, minute).statuses[A].phase is Phase.READY:
            return repo
    raise AssertionError("the demo did not become ready")


def test_an_idle_demo_is_expired_and_the_rule_recorded_only_when_it_acts(tmp_path: Path) -> None:
    world = World()
    with PrometheusStandIn() as prom:
        repo = ready_repo(tmp_path, world, prom)
        assert cycle(repo, world, prom, 20).commit is None, "younger than the rule"
        for minute in (25, 30, 40, 50):  # requests keep coming: read every cycle, never written
            prom.last[A] = at(minute - 1)
            assert cycle(repo, world, prom, minute).commit is None
        assert "lastAccessed" not in status_of(repo)
        ref = status_of(repo)["supabase"]["projectRef"]  # type: ignore[index]
        # the project's deletion fails once, so the teardown spans cycles
        world.supabase.fail_on[("delete_project", ref)] = ProviderError(
            "supabase", "delete", "busy", retryable=True
        )
        result = cycle(repo, world, prom, 80)  # the last request was 31 minutes ago
        assert result.commit is not None
        status = status_of(repo)
        assert status["phase"] == "destroying"
        assert status["lastAccessed"] == "2026-11-25T09:49:00Z"
        assert status["idleExpiredAt"] == "2026-11-25T10:20:00Z"
        assert "idle for 30m or more" in str(status["message"])
        # the teardown goes on even when Prometheus no longer answers
        prom.fail = (503, "unavailable", "down")
        for minute in range(81, 90):
            if not (repo / "status" / f"{A}.yaml").exists():
                break
            cycle(repo, world, prom, minute)
        assert not (repo / "demos" / f"{A}.yaml").exists()
        assert log_subjects(repo)[0].startswith(f"{A}: removed")


def test_a_failed_prometheus_read_expires_nothing(tmp_path: Path) -> None:
    world = World()
    with PrometheusStandIn() as prom:
        repo = ready_repo(tmp_path, world, prom)
        prom.fail = (503, "unavailable", "Prometheus is starting")
        for minute in (60, 90, 110):
            assert cycle(repo, world, prom, minute).commit is None
        assert status_of(repo)["phase"] == "ready"
        prom.fail = None  # answered again, and no request in the window: now it goes
        assert cycle(repo, world, prom, 111).commit is not None
        assert log_subjects(repo)[0].startswith(f"{A}: removed")


def test_the_idle_rule_is_under_the_mass_deletion_guard(tmp_path: Path) -> None:
    from reconciler.plan import Observed, plan

    ids = [f"demo-n{i}" for i in range(4)]
    loaded = [load_demo(f"demos/{i}.yaml", demo_yaml(i).encode()) for i in ids]
    statuses = {i: make_status(i) for i in ids}
    observed = Observed(last_accessed=dict.fromkeys(ids))
    created = dict.fromkeys(ids, BASE_TIME)
    refused = plan(SETTINGS, loaded, created, statuses, observed, at(60))
    assert all(d.intent.value != "teardown" for d in refused.demos)
    assert any("idle rule" in r for r in refused.refusals)
    allowed = plan(SETTINGS, loaded, created, statuses, observed, at(60), allow_mass_delete=True)
    assert all(d.intent.value == "teardown" for d in allowed.demos)


# --- list and status ---------------------------------------------------------------------


def cli_repo(tmp_path: Path, url: str) -> Path:
    from reconciler.gitstate import DemoChange, commit_cycle
    from reconciler.statusfile import status_bytes

    _, repo = origin_and_clone(tmp_path, files={"reconciler.yaml": settings_bytes(url)})
    files = {f"demos/{i}.yaml": demo_yaml(i) for i in (A, "demo-b", "demo-c")}
    commit_as(repo, when=BASE_TIME, files=files, message="add")
    statuses = {
        A: make_status(A),
        "demo-b": make_status("demo-b"),
        "demo-c": make_status("demo-c", Phase.CREATING),
    }
    commit_cycle(
        repo,
        {f"status/{i}.yaml": status_bytes(s) for i, s in statuses.items()},
        [DemoChange(i, s.phase.value) for i, s in statuses.items()],
        when=at(5),
    )
    return repo


def run(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from reconciler.cli import cli

    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout


def test_list_and_status_show_the_last_request_read_now(tmp_path: Path) -> None:
    import json

    with PrometheusStandIn() as prom:
        repo = cli_repo(tmp_path, prom.url)
        prom.last[A] = at(48)
        now = at(60).isoformat()
        code, out = run("list", "--repo", str(repo), "--now", now)
        assert code == 0, out
        lines = {line.split()[0]: line for line in out.splitlines()[1:]}
        assert "LAST REQUEST" in out.splitlines()[0]
        assert "12m ago" in lines[A] and "none seen" in lines["demo-b"]
        assert " - " in lines["demo-c"], "a demo not running is not asked about"
        code, out = run("list", "--repo", str(repo), "--now", now, "--format", "json")
        rows = {r["id"]: r for r in json.loads(out)}
        assert rows[A]["lastAccessed"] == "2026-11-25T09:48:00Z" and rows[A]["lastAccessedRead"]
        assert rows["demo-b"]["lastAccessed"] is None and rows["demo-b"]["lastAccessedRead"]
        code, out = run("status", A, "--repo", str(repo), "--now", now)
        assert code == 0, out
        assert "last request: 12m ago" in out
        # Prometheus down: said so, and the command still works
        prom.fail = (503, "unavailable", "down")
        code, out = run("status", A, "--repo", str(repo), "--now", now, "--format", "json")
        assert code == 0, out
        data = json.loads(out)
        assert data["lastRequest"] == "unknown" and data["lastAccessedRead"] is False
        assert "lastAccessed" not in yaml.safe_load((repo / "status" / f"{A}.yaml").read_text())
