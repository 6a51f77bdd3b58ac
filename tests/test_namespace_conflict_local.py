"""End to end on the local emulators: a demo named like a namespace that is not democtl's.

The Kubernetes emulator plays Flux: were the demo rendered, it would apply the demo's
Namespace over the foreign one and prune it when the demo goes, which is how a
namespace of someone else's was once deleted. The plan must refuse the demo instead.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.gitrepo import BASE_TIME, demo_yaml
from tests.test_e2e_local import START, World, world  # noqa: F401 (the fixture)

pytestmark = pytest.mark.e2e

TAKEN = "demo-payments"
LABELS = {"team": "payments", "app.kubernetes.io/managed-by": "helm"}


def namespace_labels(w: World, name: str) -> dict[str, str] | None:
    found = [n for n in w.stack.inspect()["kubernetes"]["namespaces"] if n["name"] == name]
    return dict(found[0].get("labels") or {}) if found else None


def test_a_demo_named_like_a_foreign_namespace_is_refused_and_the_namespace_survives(
    world: World,  # noqa: F811 (the fixture)
) -> None:
    assert world.stack.kubernetes is not None
    world.stack.kubernetes.add_namespace(TAKEN, LABELS)
    world.merge({f"demos/{TAKEN}.yaml": demo_yaml(TAKEN, ttl="2h")}, f"Add {TAKEN}")

    first = world.cycle(START)
    item = first.plan.for_demo(TAKEN)
    assert item is not None and [a.kind.value for a in item.actions] == ["report-conflict"]
    assert f"namespace {TAKEN} already exists without democtl's mark" in item.reason
    status = world.origin_status(TAKEN)
    assert status is not None and status["phase"] == "pending"
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "Conflict")
    assert TAKEN in stalled["message"]
    assert world.origin_file(f"rendered/{TAKEN}/namespace.yaml") is None, "nothing rendered"
    assert not world.demo_projects(TAKEN) and not world.demo_records(TAKEN)
    assert world.cycle(START + timedelta(minutes=5)).commit is None, "a lasting conflict is quiet"

    # the demo expires: its file goes, and the foreign namespace is still there, untouched
    later = BASE_TIME + timedelta(hours=2, minutes=1)
    world.cycle(later)
    world.cycle(later + timedelta(minutes=5))
    assert world.origin_file(f"demos/{TAKEN}.yaml") is None
    assert world.origin_file(f"status/{TAKEN}.yaml") is None
    labels = namespace_labels(world, TAKEN)
    assert labels is not None and labels.items() >= LABELS.items()
