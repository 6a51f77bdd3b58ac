"""Reading a release that used up its retries, as helm-controller and Argo CD report it."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.plan import reset_token
from reconciler.providers.kubernetes import _application_stalled, _helmrelease_stalled

T = "2026-11-25T10:00:00Z"


def hr_status(reason: str = "RetriesExceeded", stalled: str = "True") -> dict[str, Any]:
    return {
        "lastAttemptedGeneration": 3,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "UpgradeFailed", "message": "x"},
            {
                "type": "Stalled",
                "status": stalled,
                "reason": reason,
                "message": "upgrade retries exhausted",
                "lastTransitionTime": "2026-11-25T10:00:00Z",
            },
        ],
    }


@pytest.mark.parametrize(
    "status, expected",
    [
        pytest.param(hr_status(), "flux/3/upgrade retries exhausted", id="retries-exceeded"),
        pytest.param(hr_status(stalled="False"), None, id="not-stalled"),
        pytest.param(hr_status(reason="InvalidChartReference"), None, id="another-reason"),
        pytest.param({}, None, id="no-status-yet"),
    ],
)  # fmt: skip
def test_helmrelease_stalled(status: dict[str, Any], expected: str | None) -> None:
    assert _helmrelease_stalled(status) == expected


def app(phase: str, retries: int, limit: int = 5) -> dict[str, Any]:
    return {
        "spec": {"syncPolicy": {"retry": {"limit": limit}}},
        "status": {
            "operationState": {
                "phase": phase,
                "retryCount": retries,
                "message": "one or more objects failed to apply",
                "finishedAt": "2026-11-25T10:00:00Z",
                "syncResult": {"revision": "1.4.2"},
            }
        },
    }


@pytest.mark.parametrize(
    "application, stalled",
    [
        pytest.param(app("Failed", 5), True, id="failed-after-the-retry-limit"),
        pytest.param(app("Error", 5), True, id="error-after-the-retry-limit"),
        pytest.param(app("Failed", 2), False, id="still-retrying"),
        pytest.param(app("Succeeded", 5), False, id="succeeded"),
        pytest.param(app("Running", 0), False, id="running"),
        pytest.param({"status": {}}, False, id="never-synced"),
    ],
)
def test_application_stalled(application: dict[str, Any], stalled: bool) -> None:
    assert (_application_stalled(application) is not None) == stalled


def test_the_same_failure_later_is_the_same_cause() -> None:
    # after democtl's one reset a release that fails the same way stalls again with a new
    # time; keyed on the time, democtl would reset it after every round of retries
    later = hr_status()
    later["conditions"][1]["lastTransitionTime"] = "2026-11-25T11:00:00Z"
    assert _helmrelease_stalled(later) == _helmrelease_stalled(hr_status())
    again = app("Failed", 5)
    again["status"]["operationState"]["finishedAt"] = "2026-11-25T11:00:00Z"
    assert _application_stalled(again) == _application_stalled(app("Failed", 5))


def test_reset_token_is_stable_per_failure() -> None:
    assert reset_token("flux/3/m") == reset_token("flux/3/m")
    assert reset_token("flux/3/m") != reset_token("flux/4/m")
