"""The Kubernetes emulator at scale: a request costs what it returns, a write what it changes.

Work is counted (objects the store looked at, journal and snapshot writes and their
bytes), never timed. The clusters here are populated directly through the store, the
way `benchmarks/bench_kubernetes_emulator.py` builds 10,000 namespaces.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.local.kubernetes import KubernetesEmulator, gitops
from reconciler.local.kubernetes.store import JOURNAL_FILE, STATE_FILE
from reconciler.local.server import Request, Response
from tests.test_kubernetes import CREDENTIALS, SECRET, SERVICES, helmrelease_yaml, render

MANAGED = {"app.kubernetes.io/managed-by": "democtl"}
# democtl's Secrets carry Flux's watch label: a change reconciles the release at once
SECRET_LABELS = {**MANAGED, "reconcile.fluxcd.io/watch": "Enabled"}
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def fixed_clock() -> datetime:
    return datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def demo_id(index: int) -> str:
    return f"demo-s{index:05d}"


def populate(emulator: KubernetesEmulator, count: int) -> None:
    """`count` demos put straight into the store (namespace, quota, release, Secret), then
    one controller pass (pods, statuses) and a snapshot, as a started emulator would leave it."""
    store = emulator.store
    release = yaml.load(helmrelease_yaml("DEMO", SERVICES), Loader=_Loader)  # a safe loader
    with store.lock:
        for index in range(count):
            name = demo_id(index)
            labels = {**MANAGED, "demos.splits.network/id": name}
            store.put(
                "namespaces",
                {"metadata": {"name": name, "labels": labels}, "status": {"phase": "Active"}},
            )
            store.put(
                "resourcequotas",
                {
                    "metadata": {"name": "demo-quota", "namespace": name, "labels": MANAGED},
                    "spec": {"hard": {"requests.cpu": "2", "requests.memory": "4Gi", "pods": "20"}},
                },
            )
            ours = copy.deepcopy(release)
            ours["metadata"].update(namespace=name, labels=labels)
            ours["spec"]["values"]["commonLabels"] = {"demos.splits.network/id": name}
            store.put("helmreleases", ours)
            store.put("secrets", secret(name, CREDENTIALS))
            store.set_synced(
                name,
                {
                    "namespace": name,
                    "objects": [
                        ["namespaces", f"/{name}"],
                        ["resourcequotas", f"{name}/demo-quota"],
                        ["helmreleases", f"{name}/splits-network"],
                    ],
                },
            )
        emulator.sync()
        store.compact()


def secret(namespace: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": SECRET,
            "namespace": namespace,
            "labels": SECRET_LABELS,
            "managedFields": [{"manager": "democtl", "operation": "Apply", "apiVersion": "v1"}],
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


def get(path: str, **query: str) -> Request:
    return Request("GET", path, {k: [v] for k, v in query.items()}, {}, b"")


def apply_secret(namespace: str, values: dict[str, str]) -> Request:
    body = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": namespace, "labels": SECRET_LABELS},
            "stringData": values,
        }
    )
    return Request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/secrets/{SECRET}",
        {"fieldManager": ["democtl"]},
        {"content-type": "application/apply-patch+yaml"},
        body.encode(),
    )


def delete_secret(namespace: str) -> Request:
    return Request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{SECRET}", {}, {}, b"")


def health(name: str) -> Request:
    return Request("GET", "/health", {}, {"host": f"{name}-portal.splits.network"}, b"")


def cost_of_one_demos_requests(tmp_path: Path, demos: int) -> dict[str, dict[str, int]]:
    """What each request about one demo costs in a cluster of `demos` demos."""
    emulator = KubernetesEmulator(tmp_path / f"state-{demos}", clock=fixed_clock)
    populate(emulator, demos)
    target = demo_id(0)
    requests: list[tuple[str, Any, Any]] = [
        ("get secret", emulator.handle, get(f"/api/v1/namespaces/{target}/secrets/{SECRET}")),
        ("list pods in its namespace", emulator.handle, get(f"/api/v1/namespaces/{target}/pods")),
        (
            "list its pods by label",
            emulator.handle,
            get("/api/v1/pods", labelSelector=f"demos.splits.network/id={target}"),
        ),
        ("health", emulator.handle_health, health(target)),
        ("apply a changed secret", emulator.handle, apply_secret(target, {"K": "v2"})),
        ("delete the secret", emulator.handle, delete_secret(target)),
        ("health while unready", emulator.handle_health, health(target)),
        ("apply it again", emulator.handle, apply_secret(target, CREDENTIALS)),
    ]
    costs: dict[str, dict[str, int]] = {}
    for label, handler, request in requests:
        before = asdict(emulator.store.stats)
        response: Response = handler(request)
        assert response.status < 500 or label == "health while unready", label
        after = asdict(emulator.store.stats)
        costs[label] = {k: after[k] - before[k] for k in after}
        costs[label]["status"] = response.status
    return costs


def test_a_request_about_one_demo_costs_the_same_among_5_or_50_demos(tmp_path: Path) -> None:
    small = cost_of_one_demos_requests(tmp_path, 5)
    large = cost_of_one_demos_requests(tmp_path, 50)
    assert [c["status"] for c in large.values()] == [200, 200, 200, 200, 200, 200, 503, 201]
    for label in small:
        # the same objects looked at, the same journal lines, and no snapshot rewritten
        assert large[label]["visited"] == small[label]["visited"], label
        assert large[label]["journal_writes"] == small[label]["journal_writes"], label
        assert large[label]["snapshot_writes"] == small[label]["snapshot_writes"] == 0, label
        # the bytes of the changed objects only (longer resourceVersions aside)
        assert abs(large[label]["journal_bytes"] - small[label]["journal_bytes"]) < 100, label
    writes = ("apply a changed secret", "delete the secret", "apply it again")
    assert all(large[w]["journal_writes"] == 1 for w in writes)
    reads = ("get secret", "list pods in its namespace", "list its pods by label", "health")
    assert all(large[r]["journal_writes"] == 0 for r in reads)


def test_pages_of_one_list_are_served_from_one_snapshot(tmp_path: Path) -> None:
    emulator = KubernetesEmulator(tmp_path / "state", clock=fixed_clock)
    populate(emulator, 12)
    stats = emulator.store.stats
    names: list[str] = []
    token, visited = None, []
    while True:
        before = stats.visited
        query = {"labelSelector": "app.kubernetes.io/managed-by=democtl", "limit": "5"}
        if token:
            query["continue"] = token
        page = emulator.handle(get("/api/v1/namespaces", **query))
        visited.append(stats.visited - before)
        names += [item["metadata"]["name"] for item in page.body["items"]]
        token = page.body["metadata"].get("continue")
        if not token:
            break
    assert names == [demo_id(i) for i in range(12)]
    assert visited == [12, 0, 0]  # the first page finds the list, the next ones reuse it


def test_a_bad_selector_is_refused_even_when_nothing_would_match(tmp_path: Path) -> None:
    emulator = KubernetesEmulator(tmp_path / "state", clock=fixed_clock)
    answer = emulator.handle(get("/api/v1/secrets", labelSelector="a in b"))
    assert answer.status == 400
    assert answer.body["reason"] == "BadRequest"


def test_writes_append_to_a_journal_that_the_next_start_folds_into_the_snapshot(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    first = KubernetesEmulator(state, clock=fixed_clock)
    populate(first, 3)
    snapshot = (state / STATE_FILE).read_text()
    first.handle(apply_secret(demo_id(1), {"K": "v2"}))
    first.handle(delete_secret(demo_id(2)))
    world = first.inspect()
    assert (state / STATE_FILE).read_text() == snapshot  # not rewritten by the writes
    lines = (state / JOURNAL_FILE).read_text().splitlines()
    assert len(lines) == 2

    # A crash in the middle of a third append leaves a torn line: that save never happened.
    with (state / JOURNAL_FILE).open("a") as journal:
        journal.write('{"resourceVersion": 999, "put": [["secr')
    read_only = KubernetesEmulator(state, source=None, clock=fixed_clock)
    assert read_only.inspect() == world  # what `democtl local inspect` reads
    assert (state / JOURNAL_FILE).is_file()  # reading never writes

    second = KubernetesEmulator(state, clock=fixed_clock).start()
    try:
        assert not (state / JOURNAL_FILE).exists()  # folded in by the serving process
        assert second.inspect() == world
        on_disk = json.loads((state / STATE_FILE).read_text())
        assert on_disk["resourceVersion"] == int(world["resourceVersion"])
        assert f"{demo_id(2)}/{SECRET}" not in on_disk["objects"]["secrets"]
    finally:
        second.stop()
    text = "".join(p.read_text() for p in state.iterdir())
    assert CREDENTIALS["SUPABASE_DB_PASSWORD"] not in text
    assert base64.b64encode(b"v2").decode() not in text  # digests only, journal included


def test_a_journal_larger_than_the_snapshot_is_compacted_on_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reconciler.local.kubernetes.store.MIN_COMPACT_BYTES", 0)
    emulator = KubernetesEmulator(tmp_path / "state", clock=fixed_clock)
    populate(emulator, 2)
    stats = emulator.store.stats
    writes, snapshots = 0, stats.snapshot_writes
    while stats.snapshot_writes == snapshots:
        emulator.handle(apply_secret(demo_id(0), {"K": f"v{writes}"}))
        writes += 1
    assert writes > 1 and not (tmp_path / "state" / JOURNAL_FILE).exists()
    assert KubernetesEmulator(tmp_path / "state").inspect() == emulator.inspect()


def test_controllers_that_follow_changes_end_where_a_full_pass_ends(tmp_path: Path) -> None:
    """After writes handled incrementally, a fresh emulator's full pass changes nothing."""
    repo = tmp_path / "repo"
    for index in range(4):
        render(repo, demo_id(index), gitops="flux" if index % 2 else "argo")
    first = KubernetesEmulator(tmp_path / "state", source=repo, clock=fixed_clock)
    for index in (0, 1, 2):
        first.handle(apply_secret(demo_id(index), CREDENTIALS))
    first.handle(delete_secret(demo_id(1)))
    render(repo, demo_id(3), services={"portal": 3})
    first.record_restarts(demo_id(0), "portal", 2)
    first.sync()
    version, world = first.store.version, first.inspect()
    assert [p["ready"] for p in world["pods"] if p["namespace"] == demo_id(0)] == [True] * 4

    fresh = KubernetesEmulator(tmp_path / "state", source=repo, clock=fixed_clock)
    fresh.sync()
    assert fresh.store.version == version
    assert fresh.inspect() == world


def test_a_restart_does_not_parse_an_unchanged_rendered_tree_again(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    render(repo, demo_id(0))
    KubernetesEmulator(tmp_path / "state", source=repo, clock=fixed_clock).sync()
    # Same name, size and mtime, one more portal replica: only a re-parse would notice.
    path = repo / "rendered" / demo_id(0) / "release.yaml"
    stat = path.stat()
    path.write_text(path.read_text().replace("replicas: 2", "replicas: 3"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = KubernetesEmulator(tmp_path / "state", source=repo, clock=fixed_clock)
    before = again.store.version
    again.sync()
    assert again.store.version == before


# --- the rendered/ tree: only changed folders are looked at ------------------------------


def pods_of(emulator: KubernetesEmulator, name: str) -> int:
    answer = emulator.handle(get(f"/api/v1/namespaces/{name}/pods"))
    return len(answer.body["items"])


def namespaces(emulator: KubernetesEmulator) -> list[str]:
    answer = emulator.handle(get("/api/v1/namespaces"))
    return [item["metadata"]["name"] for item in answer.body["items"]]


@pytest.fixture(params=["inotify", "scan"])
def watch_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "scan":  # a machine without inotify
        monkeypatch.setattr("reconciler.local.kubernetes.treewatch._libc", lambda: None)
    return str(request.param)


def test_every_change_to_rendered_is_seen_by_the_next_request(
    tmp_path: Path, watch_kind: str
) -> None:
    repo = tmp_path / "repo"
    render(repo, demo_id(0))
    emulator = KubernetesEmulator(tmp_path / "state", source=repo, clock=fixed_clock)
    try:
        assert pods_of(emulator, demo_id(0)) == 4
        assert emulator.gitops._watch is not None
        assert emulator.gitops._watch.watching is (watch_kind == "inotify")
        render(repo, demo_id(0), services={"portal": 1})  # rewritten in place
        assert pods_of(emulator, demo_id(0)) == 1
        render(repo, demo_id(1))  # a new folder
        assert pods_of(emulator, demo_id(1)) == 4
        release = repo / "rendered" / demo_id(1) / "release.yaml"
        tmp = release.with_suffix(".tmp")
        tmp.write_text(release.read_text().replace("replicas: 2", "replicas: 5"))
        os.replace(tmp, release)  # as gitstate writes: a new file renamed over the old one
        assert pods_of(emulator, demo_id(1)) == 7
        shutil.rmtree(repo / "rendered" / demo_id(0))  # a folder removed
        assert namespaces(emulator) == [demo_id(1)]
        shutil.rmtree(repo / "rendered")  # the whole tree removed, then written again
        # Flux: the Kustomization's path is gone, it fails before it prunes anything
        assert namespaces(emulator) == [demo_id(1)]
        render(repo, demo_id(2))
        assert namespaces(emulator) == [demo_id(2)]
        moved = tmp_path / "elsewhere"
        render(moved, demo_id(3))
        os.rename(moved / "rendered" / demo_id(3), repo / "rendered" / demo_id(3))  # moved in
        assert namespaces(emulator) == [demo_id(2), demo_id(3)]
    finally:
        emulator.gitops.close()


def test_a_request_looks_only_at_the_folders_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[str] = []
    real = gitops.fingerprint

    def counting(folder: Path) -> gitops.Fingerprint:
        looked.append(folder.name)
        return real(folder)

    monkeypatch.setattr(gitops, "fingerprint", counting)
    repo = tmp_path / "repo"
    for index in range(30):
        render(repo, demo_id(index))
    emulator = KubernetesEmulator(tmp_path / "state", source=repo, clock=fixed_clock)
    try:
        assert pods_of(emulator, demo_id(0)) == 4
        assert emulator.gitops._watch is not None
        if not emulator.gitops._watch.watching:
            pytest.skip("no inotify on this machine: every request scans the tree")
        assert len(looked) == 30  # the first look is at everything
        looked.clear()
        assert pods_of(emulator, demo_id(0)) == 4
        assert looked == []  # nothing changed: nothing looked at
        render(repo, demo_id(7), services={"portal": 1})
        assert pods_of(emulator, demo_id(7)) == 1
        assert looked == [demo_id(7)]
    finally:
        emulator.gitops.close()
