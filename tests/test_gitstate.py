"""gitstate against real repositories: a bare origin and clones in a temporary folder."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler import gitstate
from reconciler.gitstate import (
    DemoChange,
    Identity,
    LockHeld,
    LockLost,
    PushGaveUp,
    SyncError,
    acquire_lock,
    commit_cycle,
    creation_times,
    load_state,
    push,
    push_with_replan,
    release_lock,
    removal_writes,
    renew_lock,
    sync,
)
from reconciler.guard import check_mass_deletion
from reconciler.model import Phase
from reconciler.statusfile import status_bytes
from tests.gitrepo import (
    BASE_TIME,
    clone,
    commit_as,
    demo_yaml,
    git,
    make_status,
    origin_and_clone,
    sample_settings,
)

T1 = BASE_TIME + timedelta(hours=1)
T2 = BASE_TIME + timedelta(hours=2)
T3 = BASE_TIME + timedelta(hours=3)
NOW = BASE_TIME + timedelta(hours=4)
BOB = ("Bob Example", "bob@splits.network")
BOT = Identity()


def commit_count(repo: Path, ref: str = "HEAD") -> int:
    return int(git(repo, "rev-list", "--count", ref).strip())


# --- creation times -------------------------------------------------------------------


def test_creation_time_is_when_the_file_landed(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(work, when=T1, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    commit_as(work, when=T2, files={"demos/demo-b.yaml": demo_yaml("demo-b")})
    assert creation_times(work) == {"demo-a": T1, "demo-b": T2}


def test_ttl_extension_does_not_move_created_at(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(work, when=T1, files={"demos/demo-a.yaml": demo_yaml("demo-a", ttl="2h")})
    commit_as(work, BOB, T2, {"demos/demo-a.yaml": demo_yaml("demo-a", ttl="6h")})
    assert creation_times(work) == {"demo-a": T1}
    state = load_state(work, NOW)
    assert state.created_at["demo-a"] == T1
    assert state.valid_demos["demo-a"].spec.ttl == "6h"


def test_re_added_file_starts_a_new_demo(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(work, when=T1, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    commit_as(work, when=T2, files={"demos/demo-a.yaml": None})
    assert creation_times(work) == {}
    commit_as(work, when=T3, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    assert creation_times(work) == {"demo-a": T3}


def test_renamed_file_is_a_new_demo(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(work, when=T1, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    commit_as(
        work, when=T2, files={"demos/demo-a.yaml": None, "demos/demo-b.yaml": demo_yaml("demo-a")}
    )
    assert creation_times(work) == {"demo-b": T2}


def test_merged_pull_request_counts_from_the_merge(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    git(work, "checkout", "--quiet", "-b", "add-demo")
    commit_as(work, when=T1, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    git(work, "checkout", "--quiet", "main")
    commit_as(work, when=T2, files={"README.md": "unrelated\n"})
    env = {"GIT_COMMITTER_DATE": f"@{int(T3.timestamp())} +0000"}
    git(work, "merge", "--quiet", "--no-ff", "-m", "Merge pull request #1", "add-demo", env=env)
    assert creation_times(work) == {"demo-a": T3}


# --- loading --------------------------------------------------------------------------


def test_load_state_reads_everything_and_distrusts_broken_status(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    good = status_bytes(make_status("demo-a"))
    head = commit_as(
        work,
        when=T1,
        files={
            "demos/demo-a.yaml": demo_yaml("demo-a"),
            "demos/demo-b.yaml": demo_yaml("demo-b"),
            "demos/demo-bad.yaml": "spec: [oops\n",
            "status/demo-a.yaml": good,
            "status/demo-b.yaml": good[: len(good) // 2],  # half-written
            "status/demo-c.yaml": b"",  # a crash left it empty
        },
    )
    state = load_state(work, NOW)
    assert state.head == head
    assert state.usable
    assert set(state.statuses) == {"demo-a"}
    assert state.untrusted_status == {"demo-b", "demo-c"}
    assert {p.file for p in state.status_problems} == {"status/demo-b.yaml", "status/demo-c.yaml"}
    assert set(state.valid_demos) == {"demo-a", "demo-b"}
    assert [p.file for p in state.demo_problems] == ["demos/demo-bad.yaml"]
    assert state.live_ids == {"demo-a", "demo-b", "demo-c"}
    assert state.vanished_ids == {"demo-c"}


def test_load_state_surfaces_unusable_settings(tmp_path: Path) -> None:
    _, work = origin_and_clone(
        tmp_path, files={"reconciler.yaml": "kind: ReconcilerSettings\n", "demos/demo-a.yaml": ""}
    )
    state = load_state(work, NOW)
    assert not state.usable
    assert state.settings_problems
    assert all(p.file == "reconciler.yaml" for p in state.settings_problems)
    assert [p.file for p in state.demo_problems] == ["demos/demo-a.yaml"]


def test_broken_status_is_rebuilt_by_the_next_cycle(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(work, when=T1, files={"status/demo-a.yaml": "schemaVersion: 1\nid: demo-a\n"})
    state = load_state(work, NOW)
    assert "demo-a" in state.untrusted_status and "demo-a" not in state.statuses
    rebuilt = status_bytes(make_status("demo-a"))
    sha = commit_cycle(work, {"status/demo-a.yaml": rebuilt}, [DemoChange("demo-a", "rebuilt")])
    assert sha is not None
    assert load_state(work, NOW).statuses["demo-a"] == make_status("demo-a")


def test_guard_trips_on_an_emptied_demos_folder(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    ids = ["demo-a", "demo-b", "demo-c", "demo-d"]
    files: dict[str, str | bytes | None] = {}
    for demo_id in ids:
        files[f"demos/{demo_id}.yaml"] = demo_yaml(demo_id)
        files[f"status/{demo_id}.yaml"] = status_bytes(make_status(demo_id))
    commit_as(work, when=T1, files=files)
    commit_as(work, when=T2, files={f"demos/{i}.yaml": None for i in ids}, message="oops")
    state = load_state(work, NOW)
    assert state.vanished_ids == set(ids)
    assert state.settings is not None
    safety = state.settings.safety
    verdict = check_mass_deletion(
        state.live_ids, state.vanished_ids, safety.massDeleteShare, safety.massDeleteMinimum, False
    )
    assert verdict.tripped
    assert "4 of 4" in verdict.message


# --- commits --------------------------------------------------------------------------


def test_no_op_cycle_makes_no_commit(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    status = status_bytes(make_status("demo-a"))
    before = commit_count(work)
    assert commit_cycle(work, {"status/demo-a.yaml": status}, [DemoChange("demo-a", "ready")])
    assert commit_count(work) == before + 1
    # the same cycle again: same bytes, nothing to commit
    assert (
        commit_cycle(work, {"status/demo-a.yaml": status}, [DemoChange("demo-a", "ready")]) is None
    )
    assert commit_cycle(work, {}, []) is None
    assert commit_cycle(work, {"status/demo-zz.yaml": None}, [DemoChange("demo-zz", "x")]) is None
    assert commit_count(work) == before + 1
    assert git(work, "status", "--porcelain") == ""


def test_commit_message_subject_body_and_trailers(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    sha = commit_cycle(
        work,
        {
            "status/demo-b.yaml": status_bytes(make_status("demo-b", Phase.CREATING)),
            "status/demo-a.yaml": status_bytes(make_status("demo-a")),
        },
        [
            DemoChange("demo-b", "creating", "supabase project requested"),
            DemoChange("demo-a", "ready"),
        ],
        Identity("reconciler-bot", "bot@splits.network"),
        when=T1,
    )
    assert sha
    assert git(work, "log", "-1", "--format=%s") == "demo-a: ready, demo-b: creating\n"
    assert git(work, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%ct") == (
        f"reconciler-bot <bot@splits.network>|reconciler-bot <bot@splits.network>"
        f"|{int(T1.timestamp())}\n"
    )
    body = git(work, "log", "-1", "--format=%b")
    assert "- demo-a: ready\n- demo-b: creating (supabase project requested)\n" in body
    message = git(work, "log", "-1", "--format=%B")
    parsed = git(work, "interpret-trailers", "--parse", input_text=message)
    assert parsed.splitlines() == [
        "Demo-Id: demo-a",
        "Demo-Action: ready",
        "Demo-Id: demo-b",
        "Demo-Action: creating",
    ]


@pytest.mark.parametrize(
    "changes, subject",
    [
        pytest.param([DemoChange("demo-acme01", "ready")], "demo-acme01: ready", id="one"),
        pytest.param(
            [DemoChange("demo-acme01", "expired, removed")],
            "demo-acme01: expired, removed",
            id="removal",
        ),
        pytest.param(
            [DemoChange(f"demo-customer{i:02d}", "creating") for i in range(3)],
            "3 demos updated",
            id="many-long",
        ),
        pytest.param([DemoChange("demo-a", "bad\nnewline")], "demo-a: bad newline", id="one-line"),
    ],
)
def test_commit_subjects(changes: list[DemoChange], subject: str) -> None:
    message = gitstate.commit_message(changes, ["x"])
    assert message.splitlines()[0] == subject
    assert len(subject) <= 72


def test_leftover_writes_of_a_crashed_cycle_are_committed(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    data = status_bytes(make_status("demo-a"))
    gitstate.write_files(work, {"status/demo-a.yaml": data})  # crash before commit
    sha = commit_cycle(work, {"status/demo-a.yaml": data}, [DemoChange("demo-a", "ready")])
    assert sha is not None
    assert git(work, "show", "--name-only", "--format=", sha).split() == ["status/demo-a.yaml"]


def test_commit_touches_only_the_cycle_paths(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    (work / "notes.txt").write_text("someone's scratch file\n")
    git(work, "add", "notes.txt")
    sha = commit_cycle(
        work,
        {"status/demo-a.yaml": status_bytes(make_status("demo-a"))},
        [DemoChange("demo-a", "ready")],
    )
    assert git(work, "show", "--name-only", "--format=", str(sha)).split() == ["status/demo-a.yaml"]
    assert git(work, "status", "--porcelain").splitlines() == ["A  notes.txt"]


def test_removal_is_one_commit(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(
        work,
        when=T1,
        files={
            "demos/demo-a.yaml": demo_yaml("demo-a"),
            "demos/demo-b.yaml": demo_yaml("demo-b"),
            "status/demo-a.yaml": status_bytes(make_status("demo-a")),
            "rendered/demo-a/namespace.yaml": "kind: Namespace\n",
            "rendered/demo-a/apps/release.yaml": "kind: HelmRelease\n",
            "rendered/demo-b/namespace.yaml": "kind: Namespace\n",
        },
    )
    writes = removal_writes(work, "demo-a")
    assert writes == {
        "demos/demo-a.yaml": None,
        "status/demo-a.yaml": None,
        "rendered/demo-a/apps/release.yaml": None,
        "rendered/demo-a/namespace.yaml": None,
    }
    sha = commit_cycle(work, writes, [DemoChange("demo-a", "expired, removed")], when=T2)
    assert sha
    assert sorted(git(work, "show", "--name-only", "--format=", sha).split()) == sorted(writes)
    assert not (work / "rendered/demo-a").exists()
    assert (work / "rendered/demo-b/namespace.yaml").exists()
    assert git(work, "log", "-1", "--format=%s") == "demo-a: expired, removed\n"
    with pytest.raises(ValueError):
        removal_writes(work, "../etc")


def test_removal_takes_rendered_files_whose_names_git_quotes(tmp_path: Path) -> None:
    """`ls-files` without -z quotes such a name: the removal named a path that is not
    there, and the tracked file (gone from the work tree) stayed in the commit's tree."""
    _, work = origin_and_clone(tmp_path)
    odd = ["rendered/demo-a/café.yaml", "rendered/demo-a/a\tb.yaml", 'rendered/demo-a/"q".yaml']
    commit_as(
        work,
        when=T1,
        files={"demos/demo-a.yaml": demo_yaml("demo-a"), **dict.fromkeys(odd, "kind: x\n")},
    )
    (work / odd[0]).unlink()  # tracked, no longer on disk: only ls-files knows it
    writes = removal_writes(work, "demo-a")
    assert writes == dict.fromkeys(["demos/demo-a.yaml", "status/demo-a.yaml", *sorted(odd)])
    commit_cycle(work, writes, [DemoChange("demo-a", "expired, removed")], when=T2)
    assert git(work, "ls-files", "-z", "rendered/").split("\0") == [""]


# --- sync and push --------------------------------------------------------------------


def test_two_clones_racing_to_push_both_land(tmp_path: Path) -> None:
    origin, first = origin_and_clone(tmp_path)
    second = clone(origin, tmp_path / "second")

    def cycle_for(work: Path, demo_id: str) -> Callable[[], str | None]:
        def cycle() -> str | None:
            state = load_state(work, NOW)
            if demo_id in state.statuses:
                return None  # idempotent: already done on this head
            return commit_cycle(
                work,
                {f"status/{demo_id}.yaml": status_bytes(make_status(demo_id))},
                [DemoChange(demo_id, "ready")],
            )

        return cycle

    # both plan on the same head; the first pushes, the second is rejected and re-plans
    planned_early = cycle_for(second, "demo-b")()
    assert planned_early is not None
    sleeps: list[float] = []
    first_sha = push_with_replan(first, cycle_for(first, "demo-a"), sleep=sleeps.append)
    assert first_sha and sleeps == []
    calls: list[str | None] = []

    def second_cycle() -> str | None:
        calls.append(None)
        return planned_early if len(calls) == 1 else cycle_for(second, "demo-b")()

    second_sha = push_with_replan(second, second_cycle, sleep=sleeps.append)
    assert len(calls) == 2
    assert sleeps == [1.0]
    assert second_sha is not None
    log = git(origin, "log", "--format=%s", "main").splitlines()
    assert log == ["demo-b: ready", "demo-a: ready", "initial state"]
    # no force: the first clone's commit is an ancestor of origin's head
    git(origin, "merge-base", "--is-ancestor", str(first_sha), "main")
    assert git(origin, "rev-parse", "main").strip() == second_sha


def test_push_reports_replan_and_resets_to_the_remote(tmp_path: Path) -> None:
    origin, first = origin_and_clone(tmp_path)
    second = clone(origin, tmp_path / "second")
    commit_cycle(first, {"status/demo-a.yaml": b"a\n"}, [DemoChange("demo-a", "ready")])
    assert push(first).pushed
    commit_cycle(second, {"status/demo-b.yaml": b"b\n"}, [DemoChange("demo-b", "ready")])
    result = push(second)
    assert not result.pushed and result.replan
    assert result.head == git(origin, "rev-parse", "main").strip()
    assert git(second, "rev-parse", "HEAD").strip() == result.head
    assert not (second / "status/demo-b.yaml").exists()


def test_push_with_replan_gives_up(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    rival = clone(origin, tmp_path / "rival")
    rounds = []

    def cycle() -> str | None:
        # a rival lands a change between our plan and our push, every time
        rounds.append(1)
        commit_as(
            rival, BOB, T1 + timedelta(minutes=len(rounds)), {"notes.txt": f"{len(rounds)}\n"}
        )
        git(rival, "push", "--quiet", "origin", "main")
        return commit_cycle(work, {"status/demo-a.yaml": b"x\n"}, [DemoChange("demo-a", "ready")])

    # the bound is time: the clock moves only by what the back-off sleeps
    sleeps: list[float] = []
    with pytest.raises(PushGaveUp) as gave_up:
        push_with_replan(work, cycle, sleeps.append, budget=6.5, monotonic=lambda: sum(sleeps))
    # 1 + 2 seconds slept; the next 4 would end past the 6.5s budget
    assert sleeps == [1.0, 2.0]
    message = str(gave_up.value)
    assert "gave up pushing after 3 attempts in 3s (the budget is 6.5s)" in message
    assert "Not pushed: this cycle's commit" in message and "(demo-a: ready)" in message
    assert "demo-a: ready" not in git(origin, "log", "--format=%s", "main")


def test_sync_fast_forwards(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    other = clone(origin, tmp_path / "other")
    sha = commit_as(other, BOB, T1, {"demos/demo-a.yaml": demo_yaml("demo-a")})
    git(other, "push", "--quiet", "origin", "main")
    assert sync(work) == sha
    assert (work / "demos/demo-a.yaml").exists()


def test_sync_refuses_to_lose_someone_elses_work(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    other = clone(origin, tmp_path / "other")
    commit_as(other, BOB, T1, {"a.txt": "a\n"})
    git(other, "push", "--quiet", "origin", "main")
    commit_as(work, BOB, T1, {"b.txt": "b\n"}, message="local work")
    with pytest.raises(SyncError, match=r"1 commit.*local work"):
        sync(work)
    git(work, "reset", "--quiet", "--hard", "HEAD~1")
    (work / "reconciler.yaml").write_text("edited\n")
    with pytest.raises(SyncError, match=r"uncommitted changes.*reconciler\.yaml"):
        sync(work)


def test_sync_drops_unpushed_democtl_commits(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    commit_cycle(work, {"status/demo-a.yaml": b"x\n"}, [DemoChange("demo-a", "ready")])
    assert sync(work) == git(origin, "rev-parse", "main").strip()
    assert not (work / "status/demo-a.yaml").exists()


# --- the lock -------------------------------------------------------------------------

TTL = timedelta(minutes=15)


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    origin, first = origin_and_clone(tmp_path)
    second = clone(origin, tmp_path / "second")
    lock = acquire_lock(first, "ci run 41", NOW, TTL)
    with pytest.raises(LockHeld) as held:
        acquire_lock(second, "laptop", NOW + timedelta(minutes=5), TTL)
    assert held.value.holder == "ci run 41"
    assert held.value.expires_at == NOW + TTL
    assert release_lock(first, lock)
    assert git(origin, "for-each-ref", "refs/democtl/") == ""
    again = acquire_lock(second, "laptop", NOW + timedelta(minutes=5), TTL)
    assert again.holder == "laptop"
    # the lock never touches the branch
    assert git(origin, "log", "--format=%s", "main").splitlines() == ["initial state"]


def test_stale_lock_is_taken_over(tmp_path: Path) -> None:
    origin, first = origin_and_clone(tmp_path)
    second = clone(origin, tmp_path / "second")
    crashed = acquire_lock(first, "crashed run", NOW, TTL)
    with pytest.raises(LockHeld):
        acquire_lock(second, "next run", NOW + TTL - timedelta(seconds=1), TTL)
    taken = acquire_lock(second, "next run", NOW + TTL, TTL)
    assert taken.holder == "next run"
    # the crashed holder comes back: it cannot renew or release what is no longer its
    with pytest.raises(LockLost):
        renew_lock(first, crashed, NOW + TTL, TTL)
    assert not release_lock(first, crashed)
    assert git(origin, "rev-parse", "refs/democtl/lock").strip() == taken.sha


def test_renew_extends_the_lock(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    other = clone(origin, tmp_path / "other")
    lock = acquire_lock(work, "long run", NOW, TTL)
    renewed = renew_lock(work, lock, NOW + timedelta(minutes=14), TTL)
    assert renewed.expires_at == NOW + timedelta(minutes=29)
    with pytest.raises(LockHeld):
        acquire_lock(other, "other", NOW + timedelta(minutes=20), TTL)
    assert release_lock(work, renewed)


def _race_for_lock(work: str, holder: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        acquire_lock(Path(work), holder, NOW, TTL)
        results.put((holder, "acquired"))  # type: ignore[attr-defined]
    except LockHeld as exc:
        results.put((holder, f"held by {exc.holder}"))  # type: ignore[attr-defined]


def test_two_processes_racing_for_the_lock(tmp_path: Path) -> None:
    origin, _ = origin_and_clone(tmp_path)
    racers = 4
    clones = [clone(origin, tmp_path / f"racer{i}") for i in range(racers)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(racers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race_for_lock, args=(str(c), f"racer{i}", barrier, results))
        for i, c in enumerate(clones)
    ]
    for proc in procs:
        proc.start()
    outcomes = dict(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    winners = [h for h, outcome in outcomes.items() if outcome == "acquired"]
    assert len(winners) == 1, outcomes
    assert all(o == f"held by {winners[0]}" for h, o in outcomes.items() if h != winners[0])


# --- history --------------------------------------------------------------------------


def test_history_tells_the_story(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(
        work, when=T1, files={"demos/demo-a.yaml": demo_yaml("demo-a", "2h")}, message="Add demo-a"
    )
    commit_cycle(
        work,
        {"status/demo-a.yaml": status_bytes(make_status("demo-a"))},
        [DemoChange("demo-a", "ready")],
        when=T1 + timedelta(minutes=10),
    )
    commit_as(work, BOB, T2, {"demos/demo-a.yaml": demo_yaml("demo-a", "6h")}, message="Extend")
    commit_cycle(
        work, removal_writes(work, "demo-a"), [DemoChange("demo-a", "expired, removed")], when=T3
    )
    events = [(e.action, e.detail, e.author) for e in gitstate.history(work, "demo-a")]
    assert events == [
        ("added", "ttl 2h", "Alice Example"),
        ("ready", "", "democtl"),
        ("extended", "ttl 2h -> ttl 6h", "Bob Example"),
        ("expired, removed", "", "democtl"),
    ]
    assert gitstate.history(work, "demo-zz") == []


# names git writes in quotes with C escapes in `--raw` (core.quotePath is on by default)
QUOTED_NAMES = ["démo-x", 'demo-"q"', "demo\\back", "demo\ttab", "demo\nline", "demo-\x1b[31m"]


def test_history_tells_of_files_whose_names_git_quotes(tmp_path: Path) -> None:
    """Not demo ids (validate refuses them), yet a person committed them, as the
    unquoted `demos/demo x.yaml` is told: history said nothing at all of them."""
    _, work = origin_and_clone(tmp_path)
    files = {f"demos/{name}.yaml": demo_yaml("demo-a", "2h") for name in QUOTED_NAMES}
    commit_as(work, when=T1, files=files, message="Add oddly named demos")
    commit_as(work, BOB, T2, {"demos/démo-x.yaml": demo_yaml("demo-a", "6h")}, message="Extend")
    commit_as(work, when=T3, files={"demos/demo\ttab.yaml": None}, message="Drop")
    events = [(e.demo_id, e.action, e.detail) for e in gitstate.history(work)]
    assert events == [
        *sorted((name, "added", "ttl 2h") for name in QUOTED_NAMES),  # git's (bytes) order
        ("démo-x", "extended", "ttl 2h -> ttl 6h"),
        ("demo\ttab", "deleted", "file removed"),
    ]
    assert [e.action for e in gitstate.history(work, "démo-x")] == ["added", "extended"]


def test_history_reads_why_from_the_body_line_of_each_change(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(work, when=T1, files={"demos/demo-a.yaml": demo_yaml("demo-a", "2h")})
    commit_as(work, when=T1, files={"demos/demo-b.yaml": demo_yaml("demo-b", "2h")})
    commit_cycle(
        work,
        {
            "status/demo-a.yaml": status_bytes(make_status("demo-a")),
            "status/demo-b.yaml": status_bytes(make_status("demo-b")),
        },
        [
            DemoChange("demo-a", "destroying", "demo file deleted"),
            DemoChange("demo-b", "creating (dns updated)"),  # parentheses, but no detail
        ],
        when=T2,
    )
    last = {e.demo_id: (e.action, e.detail) for e in gitstate.history(work)}
    assert last == {
        "demo-a": ("destroying", "demo file deleted"),
        "demo-b": ("creating (dns updated)", ""),
    }


def test_held_lock_is_released_when_the_block_fails(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    with pytest.raises(RuntimeError), gitstate.held_lock(work, "cycle", NOW, TTL) as lock:
        assert git(origin, "rev-parse", "refs/democtl/lock").strip() == lock.sha
        raise RuntimeError("apply failed")
    assert git(origin, "for-each-ref", "refs/democtl/") == ""


def test_sync_refuses_a_detached_head(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    git(work, "checkout", "--quiet", "--detach")
    with pytest.raises(SyncError, match="detached"):
        sync(work)


def test_history_reports_hand_edited_status_and_deletions(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_as(work, when=T1, files={"demos/demo-a.yaml": demo_yaml("demo-a")})
    commit_as(work, BOB, T2, {"status/demo-a.yaml": "phase: ready\n"}, message="poke")
    commit_as(work, BOB, T3, {"demos/demo-a.yaml": None}, message="Remove demo-a")
    events = [(e.action, e.author, e.subject) for e in gitstate.history(work)]
    assert events == [
        ("added", "Alice Example", "change"),
        ("status edited", "Bob Example", "poke"),
        ("deleted", "Bob Example", "Remove demo-a"),
    ]


def test_push_refused_by_a_hook_is_an_error_not_a_replan(tmp_path: Path) -> None:
    origin, work = origin_and_clone(tmp_path)
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    commit_cycle(work, {"status/demo-a.yaml": b"x\n"}, [DemoChange("demo-a", "ready")])
    with pytest.raises(gitstate.PushError, match=r"branch is protected.*pre-receive hook declined"):
        push(work)


def test_sync_discards_what_an_interrupted_cycle_left(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    commit_cycle(work, {"status/demo-a.yaml": b"committed\n"}, [DemoChange("demo-a", "ready")])
    push(work)
    # crash between write and commit: a modified status and a new rendered file
    gitstate.write_files(
        work, {"status/demo-a.yaml": b"half\n", "rendered/demo-a/ns.yaml": b"kind: Namespace\n"}
    )
    (work / "scratch.txt").write_text("not ours, untracked: left alone\n")
    sync(work)
    assert (work / "status/demo-a.yaml").read_bytes() == b"committed\n"
    assert not (work / "rendered").exists()
    assert (work / "scratch.txt").exists()


def test_sync_discards_its_own_half_written_files_whose_names_git_quotes(tmp_path: Path) -> None:
    """`status --porcelain` without -z wrote `"rendered/demo-a/caf\\303\\251.yaml"`:
    in no folder of democtl's, it was taken for a person's change and sync refused."""
    _, work = origin_and_clone(tmp_path)
    rendered = {"rendered/demo-a/café.yaml": b"kind: x\n", "rendered/demo-a/a\tb.yaml": b"y\n"}
    commit_cycle(work, rendered, [DemoChange("demo-a", "ready")])
    push(work)
    gitstate.write_files(work, dict.fromkeys(rendered, b"half\n"))
    sync(work)
    assert {p: (work / p).read_bytes() for p in rendered} == rendered
    (work / "demos").mkdir(exist_ok=True)
    commit_as(work, when=T1, files={"demos/démo.yaml": "x\n"})
    push(work)
    (work / "demos/démo.yaml").write_text("changed by hand\n")
    with pytest.raises(
        SyncError, match=r"uncommitted changes to tracked files \(demos/démo\.yaml\)"
    ):
        sync(work)


def test_committer_identity_comes_from_settings(tmp_path: Path) -> None:
    settings = (
        sample_settings()
        .replace(b"committerName: democtl", b"committerName: demo-bot")
        .replace(b"committerEmail: democtl@localhost", b"committerEmail: bot@x.io")
    )
    _, work = origin_and_clone(tmp_path, files={"reconciler.yaml": settings})
    identity = Identity.from_settings(load_state(work, NOW).settings)
    assert identity == Identity("demo-bot", "bot@x.io")
    assert Identity.from_settings(None) == Identity("democtl", "democtl@localhost")
    change = [DemoChange("demo-a", "ready")]
    commit_cycle(work, {"status/demo-a.yaml": b"x\n"}, change, identity)
    who = git(work, "log", "-1", "--format=%an %ae %cn %ce")
    assert who == "demo-bot bot@x.io demo-bot bot@x.io\n"
    with pytest.raises(SyncError, match="democtl did not make"):
        sync(work)  # the default identity does not recognise the commit as its own
    sync(work, identity=identity)  # its own unpushed commit: dropped
    assert not (work / "status/demo-a.yaml").exists()


def test_a_cycle_writing_more_paths_than_a_command_line_holds_commits(tmp_path: Path) -> None:
    # 10,000 demos render ~80,000 files, whose names alone pass ARG_MAX (2 MiB here);
    # long nested names reach that with a few hundred files
    _, work = origin_and_clone(tmp_path)
    deep = "/".join(f"{i}" + "d" * 200 for i in range(15))
    writes: dict[str, bytes | None] = {
        f"rendered/demo-x/{deep}/{i:04d}.yaml": b"kind: ConfigMap\n" for i in range(800)
    }
    assert sum(len(p) + 1 for p in writes) > 2 * 1024 * 1024
    sha = commit_cycle(work, writes, [DemoChange("demo-x", "ready")])
    assert sha is not None
    committed = git(work, "show", "--name-only", "--format=", sha).split()
    assert len(committed) == 800
    assert commit_cycle(work, writes, [DemoChange("demo-x", "ready")]) is None


def test_a_cycle_commits_only_its_own_paths_whatever_else_is_staged(tmp_path: Path) -> None:
    _, work = origin_and_clone(tmp_path)
    (work / "notes.txt").write_text("a person's work in progress\n")
    git(work, "add", "notes.txt")
    status = status_bytes(make_status("demo-a"))
    sha = commit_cycle(work, {"status/demo-a.yaml": status}, [DemoChange("demo-a", "ready")])
    assert sha is not None
    assert git(work, "show", "--name-only", "--format=", sha).split() == ["status/demo-a.yaml"]
    assert git(work, "diff", "--cached", "--name-only").split() == ["notes.txt"]
