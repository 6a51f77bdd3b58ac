"""A demo whose host name is held by someone else's record of another type, end to end.

Cloudflare refuses the demo's CNAME beside a foreign A record (81053). democtl reports
a conflict on the demo's status (reason Conflict, the name and the conflicting type in
the message), leaves the foreign record alone, never gives the demo up as failed while
it waits for a human (within the attempts a demo has), and becomes ready once the
record is gone.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from reconciler.local.stack import LOCAL_TOKEN, LocalStack
from reconciler.loop import run_cycle
from reconciler.model import Phase, Settings
from reconciler.plan import desired_records
from reconciler.wiring import close_providers, local_providers
from tests.gitrepo import BASE_TIME, commit_as, demo_yaml, origin_and_clone

pytestmark = pytest.mark.e2e

DEMO = "demo-clash01"
NOW = BASE_TIME + timedelta(minutes=1)


def test_a_name_held_by_a_foreign_record_is_a_conflict_for_a_human(tmp_path: Path) -> None:
    _, repo = origin_and_clone(tmp_path)
    commit_as(repo, files={f"demos/{DEMO}.yaml": demo_yaml(DEMO, ttl="8h")}, message="add")
    settings = Settings.model_validate(yaml.safe_load((repo / "reconciler.yaml").read_text()))
    name = desired_records(settings, DEMO)[0].name
    with LocalStack(tmp_path / "world", repo, settings, come_up_seconds=0) as stack:
        assert stack.cloudflare is not None
        foreign = stack.cloudflare.seed_record(type="A", name=name, content="198.51.100.20")
        providers = local_providers(stack)
        try:
            # cycles far enough apart that each is past the demo's backoff after a failure
            for attempt in range(settings.safety.maxAttempts - 2):
                result = run_cycle(repo, providers, NOW + timedelta(minutes=31 * attempt))
                status = result.statuses[DEMO]
                assert status.phase is not Phase.FAILED, status
            ready = status.condition("Ready")
            assert ready is not None and ready.reason == "Conflict", status.conditions
            assert f"A {name} exists and is not ours" in ready.message
            stalled = status.condition("Stalled")
            assert stalled is not None and stalled.status == "True"
            assert status.attempts == settings.safety.maxAttempts - 2
            assert [r for r in stack.cloudflare.inspect()["records"] if r["name"] == name] == [
                foreign
            ]

            # the human removes the record: the next cycles finish the demo
            gone = httpx.delete(
                f"{stack.cloudflare.api_url}/zones/{stack.cloudflare.zone_id}"
                f"/dns_records/{foreign['id']}",
                headers={"Authorization": f"Bearer {LOCAL_TOKEN}"},
            )
            assert gone.is_success
            for minute in range(70, 76):
                result = run_cycle(repo, providers, NOW + timedelta(minutes=minute))
                if result.statuses[DEMO].phase is Phase.READY:
                    break
            assert result.statuses[DEMO].phase is Phase.READY, result.statuses[DEMO]
        finally:
            close_providers(providers)
