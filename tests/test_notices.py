"""Notices: which are due (a truth table), the webhook adapter against a loopback stand-in
of Slack's incoming webhook, and the cycle sending each once on a real git repository."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from reconciler.loop import CycleOptions, run_cycle
from reconciler.model import DemoStatus, Notified, Phase, Settings
from reconciler.notify import Notices
from reconciler.plan.notices import Event, Notice, due_notices, extend_hours, record_sent
from reconciler.providers.base import Message, ProviderError
from reconciler.providers.webhook import SlackWebhook
from reconciler.wiring import notices_for
from tests.fakes import World
from tests.gitrepo import (
    BASE_TIME,
    commit_as,
    demo_yaml,
    git,
    log_subjects,
    make_status,
    origin_and_clone,
    sample_settings,
)
from tests.webhook_standin import SECRET_PATH, WebhookStandIn

ENV = "DEMOCTL_TEST_WEBHOOK"
NOTICES = f"notices:\n  webhookEnv: {ENV}\n  beforeExpiry: 30m\n".encode()


def settings_with(notices: bytes = NOTICES) -> Settings:
    return Settings.model_validate(yaml.safe_load(sample_settings() + notices))


SETTINGS = settings_with()
START = make_status().createdAt  # expires 2h later
EXPIRES = make_status().expiresAt


def status(phase: Phase = Phase.READY, **notified: object) -> DemoStatus:
    sent = Notified.model_validate(notified) if notified else None
    return make_status(phase=phase).model_copy(update={"notified": sent})


def events(notices: tuple[Notice, ...]) -> list[str]:
    return [f"{n.demo_id}:{n.event.value}" for n in notices]


A = "demo-acme01"


@pytest.mark.parametrize(
    "before, after, minutes, expected",
    [
        pytest.param({}, {A: status(Phase.CREATING)}, 5, [], id="creating-owes-nothing"),
        pytest.param({}, {A: status()}, 5, [f"{A}:ready"], id="became-ready-is-announced"),
        pytest.param(
            {A: status()}, {A: status()}, 10, [f"{A}:ready"], id="ready-not-yet-recorded-is-due"
        ),
        pytest.param(
            {}, {A: status(ready=BASE_TIME)}, 10, [], id="ready-recorded-is-never-sent-again"
        ),
        pytest.param(
            {}, {A: status(Phase.DEGRADED)}, 10, [], id="degraded-is-not-announced-as-ready"
        ),
        pytest.param(
            {}, {A: status(ready=BASE_TIME)}, 89, [], id="before-the-window-nothing-is-due"
        ),
        pytest.param(
            {}, {A: status(ready=BASE_TIME)}, 90, [f"{A}:expiring"], id="window-opens-at-30m"
        ),
        pytest.param(
            {},
            {A: status(Phase.DEGRADED, ready=BASE_TIME)},
            100,
            [f"{A}:expiring"],
            id="a-degraded-demo-is-warned-too",
        ),
        pytest.param(
            {},
            {A: status(ready=BASE_TIME, expiring=BASE_TIME, expiringFor=EXPIRES)},
            100,
            [],
            id="the-same-expiry-is-warned-once",
        ),
        pytest.param(
            {},
            {A: status(ready=BASE_TIME, expiringFor=EXPIRES - timedelta(hours=1))},
            100,
            [f"{A}:expiring"],
            id="an-extended-demo-is-warned-of-its-new-expiry",
        ),
        pytest.param(
            {}, {A: status(ready=BASE_TIME)}, 120, [], id="at-expiry-the-teardown-speaks-not-this"
        ),
        pytest.param(
            {}, {A: status(Phase.CREATING)}, 100, [], id="a-demo-not-yet-running-is-not-warned"
        ),
        pytest.param({A: status()}, {A: None}, 130, [f"{A}:removed"], id="files-removed"),
        pytest.param({}, {A: None}, 130, [], id="nothing-that-ran-nothing-to-say"),
        pytest.param({A: status()}, {}, 10, [f"{A}:ready"], id="a-demo-not-planned-keeps-its-due"),
    ],
)
def test_due_notices(
    before: dict[str, DemoStatus],
    after: dict[str, DemoStatus | None],
    minutes: int,
    expected: list[str],
) -> None:
    now = START + timedelta(minutes=minutes)
    assert events(due_notices(SETTINGS, before, after, now)) == expected


def test_nothing_is_due_without_notices_settings() -> None:
    plain = Settings.model_validate(yaml.safe_load(sample_settings()))
    assert plain.notices is None
    assert due_notices(plain, {}, {A: status()}, START) == ()


def test_expiring_notice_names_the_exact_extend_command_and_its_pull_request() -> None:
    (notice,) = due_notices(
        SETTINGS, {}, {A: status(ready=BASE_TIME)}, START + timedelta(hours=1, minutes=40)
    )
    text = notice.message.text
    assert f"democtl extend {A} --hours 2 --pr" in text
    assert f"democtl/extend-{A} ({A}: extend by 2h)" in text
    assert "expires in 20m" in text
    payload = notice.message.payload()
    assert payload["blocks"] and f"democtl extend {A} --hours 2 --pr" in str(payload["blocks"])


@pytest.mark.parametrize(
    "expires_after, hours",
    [
        pytest.param(timedelta(hours=2), 2.0, id="room-for-the-default-ttl"),
        pytest.param(timedelta(hours=7), 1.0, id="at-most-up-to-the-maximum"),
        pytest.param(timedelta(hours=7, minutes=40), 0.0, id="less-than-half-an-hour-left"),
        pytest.param(timedelta(hours=8), 0.0, id="at-the-maximum"),
    ],
)
def test_extend_hours(expires_after: timedelta, hours: float) -> None:
    demo = make_status().model_copy(update={"expiresAt": START + expires_after})
    assert SETTINGS.profiles["small"].maxTtl == "8h"
    assert extend_hours(demo, SETTINGS) == hours


def test_a_demo_at_its_maximum_is_told_it_cannot_be_extended() -> None:
    demo = status(ready=BASE_TIME).model_copy(update={"expiresAt": START + timedelta(hours=8)})
    (notice,) = due_notices(SETTINGS, {}, {A: demo}, START + timedelta(hours=7, minutes=50))
    assert "cannot be extended" in notice.message.text
    assert "democtl extend" not in notice.message.text


def test_ready_notice_carries_the_demo_urls() -> None:
    (notice,) = due_notices(SETTINGS, {}, {A: status()}, START)
    assert notice.event is Event.READY
    assert f"https://{A}-portal.splits.network" in str(notice.message.payload()["blocks"])


def test_record_sent_writes_what_the_webhook_took_and_removals_nothing() -> None:
    now = START + timedelta(minutes=95)
    after: dict[str, DemoStatus | None] = {A: status(), "demo-b": None}
    due = due_notices(SETTINGS, {A: status(), "demo-b": make_status("demo-b")}, after, now)
    assert events(due) == [f"{A}:ready", f"{A}:expiring", "demo-b:removed"]
    recorded = record_sent(after, due, now)
    got = recorded[A]
    assert got is not None and got.notified == Notified(
        ready=now, expiring=now, expiringFor=EXPIRES
    )
    assert recorded["demo-b"] is None
    assert record_sent(after, (), now) == after


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "notices, rule",
    [
        pytest.param(b"notices: {beforeExpiry: 30m}\n", "exactly one", id="no-source"),
        pytest.param(
            b"notices: {webhook: 'https://hooks.example/x', webhookEnv: X}\n",
            "exactly one",
            id="two-sources",
        ),
        pytest.param(b"notices: {webhook: 'http://hooks.example/x'}\n", "https", id="plain-http"),
        pytest.param(b"notices: {webhookEnv: lower}\n", "pattern", id="not-a-variable-name"),
        pytest.param(
            b"notices: {webhookEnv: X, beforeExpiry: soon}\n", "beforeExpiry", id="bad-span"
        ),
        pytest.param(
            b"notices: {webhookEnv: X, channel: '#demos'}\n", "channel", id="unknown-field"
        ),
    ],
)
def test_bad_notices_settings_are_refused(notices: bytes, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        settings_with(notices)


def test_notices_are_no_new_cause_in_the_settings_hash() -> None:
    plain = Settings.model_validate(yaml.safe_load(sample_settings()))
    assert plain.settings_hash() == SETTINGS.settings_hash()


def test_notices_for_reads_the_url_from_the_environment_only_when_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert notices_for(SETTINGS, {}) is None
    assert f"{ENV} is not set" in caplog.text
    sender = notices_for(SETTINGS, {ENV: "https://hooks.slack.com" + SECRET_PATH})
    assert isinstance(sender, Notices)
    assert SECRET_PATH not in repr(sender.notifier)
    sender.close()


# --- the adapter against the stand-in -----------------------------------------------------


def test_webhook_posts_slack_json_and_names_refusals_without_the_url() -> None:
    with WebhookStandIn() as hook:
        webhook = SlackWebhook(hook.url)
        webhook.post(
            Message("hello", ({"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}},))
        )
        assert hook.messages == [
            {
                "text": "hello",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}],
            }
        ]
        hook.fail_with = (404, "channel_not_found")
        with pytest.raises(ProviderError, match="answered 404: channel_not_found") as refused:
            webhook.post(Message("again"))
        assert not refused.value.retryable
        assert SECRET_PATH not in str(refused.value)
        hook.fail_with = (500, "rollup_error")
        with pytest.raises(ProviderError) as outage:
            webhook.post(Message("again"))
        assert outage.value.retryable
        webhook.close()


def test_a_stalled_webhook_is_given_up_on_after_the_timeout() -> None:
    with WebhookStandIn() as hook:
        hook.hold.clear()  # the service takes the request and never answers
        webhook = SlackWebhook(hook.url, timeout=0.2)
        with pytest.raises(ProviderError, match="no answer") as stalled:
            webhook.post(Message("hello"))
        assert SECRET_PATH not in str(stalled.value)
        hook.hold.set()
        webhook.close()


def test_a_webhook_that_does_not_answer_costs_one_timeout_per_cycle() -> None:
    with WebhookStandIn() as hook:
        hook.hold.clear()
        sender = Notices(SlackWebhook(hook.url, timeout=0.2))
        due = due_notices(SETTINGS, {}, {A: status(), "demo-b": make_status("demo-b")}, START)
        assert len(due) == 2
        assert sender.send(due) == ()
        assert hook.received == 1, "the second notice waits for the next cycle"
        hook.hold.set()
        assert sender.send(due) == due
        sender.close()


def test_a_notice_delivered_once_is_not_posted_again_by_the_same_process() -> None:
    # a push rejected because the branch moved plans the cycle again on the new head,
    # where the first commit's record of the notice is gone
    with WebhookStandIn() as hook:
        sender = Notices(SlackWebhook(hook.url))
        due = due_notices(SETTINGS, {}, {A: status()}, START)
        assert sender.send(due) == due
        assert sender.send(due) == due
        assert hook.posts == 1
        sender.close()


# --- the cycle ----------------------------------------------------------------------------


def repo_with_demo(tmp_path: Path, ttl: str = "2h") -> Path:
    _, repo = origin_and_clone(tmp_path, files={"reconciler.yaml": sample_settings() + NOTICES})
    commit_as(repo, when=BASE_TIME, files={f"demos/{A}.yaml": demo_yaml(A, ttl)}, message="add")
    return repo


def cycle(repo: Path, world: World, sender: Notices, minutes: float):  # type: ignore[no-untyped-def]
    providers = world.providers()
    from dataclasses import replace

    return run_cycle(
        repo,
        replace(providers, notices=sender),
        BASE_TIME + timedelta(minutes=minutes),
        CycleOptions(),
    )


def zulu(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def notified(repo: Path) -> dict[str, object] | None:
    data = yaml.safe_load((repo / "status" / f"{A}.yaml").read_text())
    return data.get("notified")


def bring_up(repo: Path, world: World, sender: Notices, minutes: float = 5) -> float:
    cycle(repo, world, sender, minutes)
    world.cluster.sync(A)
    world.supabase.bring_up()
    for _ in range(3):
        minutes += 1
        if cycle(repo, world, sender, minutes).statuses[A].phase is Phase.READY:
            return minutes
    raise AssertionError("the demo did not become ready")


def test_cycle_sends_ready_once_and_records_it_in_the_ready_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = repo_with_demo(tmp_path)
    world = World()
    with WebhookStandIn() as hook, caplog.at_level(logging.DEBUG):
        sender = Notices(SlackWebhook(hook.url))
        at = bring_up(repo, world, sender)
        assert hook.texts() == [hook.texts()[0]] and "is ready" in hook.texts()[0]
        assert f"https://{A}-portal.splits.network" in str(hook.messages[0]["blocks"])
        ready_commit = git(repo, "show", "HEAD:status/" + A + ".yaml")
        assert "notified:" in ready_commit and log_subjects(repo)[0] == f"{A}: ready"
        # later cycles, and a fresh process (a new sender), post nothing more
        assert cycle(repo, world, sender, at + 5).commit is None
        again = Notices(SlackWebhook(hook.url))
        assert cycle(repo, world, again, at + 10).commit is None
        assert hook.posts == 1
        sender.close()
        again.close()
    everything = git(repo, "log", "-p", "--all") + caplog.text
    assert SECRET_PATH not in everything and "s3cr3t" not in everything


def test_a_failing_webhook_does_not_block_the_cycle_and_is_tried_next_cycle(tmp_path: Path) -> None:
    repo = repo_with_demo(tmp_path)
    world = World()
    with WebhookStandIn() as hook:
        sender = Notices(SlackWebhook(hook.url))
        hook.fail_with = (500, "rollup_error")
        at = bring_up(repo, world, sender)
        assert log_subjects(repo)[0] == f"{A}: ready", "the demo went ready all the same"
        assert notified(repo) is None and hook.messages == []
        hook.fail_with = None
        result = cycle(repo, world, sender, at + 5)
        assert not result.failed
        assert len(hook.messages) == 1 and "is ready" in hook.texts()[0]
        assert notified(repo) == {"ready": zulu(BASE_TIME + timedelta(minutes=at + 5))}
        sender.close()


def test_expiring_is_sent_once_per_expiry_and_again_after_an_extension(tmp_path: Path) -> None:
    repo = repo_with_demo(tmp_path)
    world = World()
    with WebhookStandIn() as hook:
        sender = Notices(SlackWebhook(hook.url))
        bring_up(repo, world, sender)
        cycle(repo, world, sender, 100)  # 1h40m: 20 minutes left
        cycle(repo, world, sender, 105)
        expiring = [t for t in hook.texts() if "expires in" in t]
        assert len(expiring) == 1 and f"democtl extend {A} --hours 2 --pr" in expiring[0]
        recorded = notified(repo)
        assert recorded is not None and recorded["expiringFor"] == "2026-11-25T11:00:00Z"
        # extended by a merged pull request: the new expiry is warned of in its turn
        commit_as(repo, when=BASE_TIME, files={f"demos/{A}.yaml": demo_yaml(A, "4h")}, message="x")
        cycle(repo, world, sender, 110)
        assert len([t for t in hook.texts() if "expires in" in t]) == 1
        cycle(repo, world, sender, 220)
        cycle(repo, world, sender, 225)
        expiring = [t for t in hook.texts() if "expires in" in t]
        assert len(expiring) == 2 and "expires in 20m" in expiring[1]
        sender.close()


def test_removal_is_sent_in_the_cycle_that_removes_the_files(tmp_path: Path) -> None:
    repo = repo_with_demo(tmp_path)
    world = World()
    with WebhookStandIn() as hook:
        sender = Notices(SlackWebhook(hook.url))
        bring_up(repo, world, sender)
        minutes = 121.0
        while (repo / "status" / f"{A}.yaml").exists():
            assert not [t for t in hook.texts() if "removed" in t], "sent before the removal"
            cycle(repo, world, sender, minutes)
            minutes += 1
            assert minutes < 130, "the teardown did not finish"
        removed = [t for t in hook.texts() if "was removed" in t]
        assert len(removed) == 1 and A in removed[0]
        assert log_subjects(repo)[0].startswith(f"{A}: removed")
        cycle(repo, world, sender, minutes + 5)
        assert len([t for t in hook.texts() if "was removed" in t]) == 1
        sender.close()
