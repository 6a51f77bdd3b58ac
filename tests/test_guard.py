"""The mass-deletion guard as a truth table."""

from __future__ import annotations

import pytest

from reconciler.guard import check_mass_deletion


def ids(n: int) -> set[str]:
    return {f"demo-{i:02d}" for i in range(n)}


@pytest.mark.parametrize(
    "live, vanished, allow, tripped",
    [
        pytest.param(ids(4), set(), False, False, id="nothing-vanished"),
        pytest.param(ids(4), ids(2), False, False, id="exactly-half-is-within-the-limit"),
        pytest.param(ids(4), ids(3), False, True, id="more-than-half-trips"),
        pytest.param(ids(4), ids(4), False, True, id="emptied-folder-trips"),
        pytest.param(ids(4), ids(4), True, False, id="allow-mass-delete-overrides"),
        pytest.param(ids(3), ids(2), False, True, id="two-of-three-trips-at-the-minimum"),
        pytest.param(ids(2), ids(2), False, False, id="below-the-minimum-never-trips"),
        pytest.param(ids(1), ids(1), False, False, id="last-demo-may-go"),
        pytest.param(ids(10), ids(5), False, False, id="half-of-ten-is-within"),
        pytest.param(ids(10), ids(6), False, True, id="six-of-ten-trips"),
        pytest.param(
            ids(4), {"demo-zz", "demo-yy", "demo-xx"}, False, False, id="non-live-ignored"
        ),
    ],
)
def test_guard(live: set[str], vanished: set[str], allow: bool, tripped: bool) -> None:
    verdict = check_mass_deletion(live, vanished, share=0.5, minimum=3, allow=allow)
    assert verdict.tripped is tripped
    assert verdict.message


def test_tripped_message_names_the_demos_and_the_way_out() -> None:
    verdict = check_mass_deletion(ids(3), ids(3), share=0.5, minimum=3, allow=False)
    assert verdict.tripped
    assert "demo-00, demo-01, demo-02" in verdict.message
    assert "3 of 3" in verdict.message
    assert "--allow-mass-delete" in verdict.message


@pytest.mark.parametrize(
    "share, vanished, tripped",
    [
        pytest.param(0.25, 1, False, id="quarter-one-of-four"),
        pytest.param(0.25, 2, True, id="quarter-two-of-four"),
        pytest.param(1.0, 4, False, id="share-one-never-trips"),
    ],
)
def test_share_is_configurable(share: float, vanished: int, tripped: bool) -> None:
    verdict = check_mass_deletion(ids(4), ids(vanished), share=share, minimum=3, allow=False)
    assert verdict.tripped is tripped
