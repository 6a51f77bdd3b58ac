"""The mass-deletion guard: refuse to tear down many live demos whose files vanished.

An emptied `demos/` folder, a bad checkout or a broken YAML library must not
turn into the teardown of every running demo. Demos that expired are not
counted: their teardown is the intended outcome. Pure: sets in, verdict out;
imports nothing from the package.
"""

from __future__ import annotations

import math
from collections.abc import Set
from dataclasses import dataclass

ALLOW_FLAG = "--allow-mass-delete"


@dataclass(frozen=True)
class GuardVerdict:
    tripped: bool
    message: str


def check_mass_deletion(
    live_ids: Set[str],
    vanished_ids: Set[str],
    share: float,
    minimum: int,
    allow: bool,
) -> GuardVerdict:
    """Trip when more than `share` of the live demos vanished and there are at least `minimum`.

    `live_ids`: demos that run now (they have a status file). `vanished_ids`:
    live demos whose file is gone or cannot be read; ids that are not live are
    ignored. When tripped the caller tears none of the vanished demos down.
    """
    live = set(live_ids)
    vanished = sorted(set(vanished_ids) & live)
    if not vanished:
        return GuardVerdict(False, "no live demo vanished")
    limit = math.floor(share * len(live) + 1e-9)
    summary = (
        f"{len(vanished)} of {len(live)} live demos vanished or became unreadable "
        f"({', '.join(vanished)}); the limit is {share:.0%} once there are at least {minimum}"
    )
    if len(live) < minimum or len(vanished) <= limit:
        return GuardVerdict(False, f"{summary}: within the limit, teardown proceeds")
    if allow:
        return GuardVerdict(False, f"{summary}: allowed by {ALLOW_FLAG}, teardown proceeds")
    return GuardVerdict(
        True,
        f"{summary}: refusing to tear any of them down. Check that demos/ is intact "
        f"(a bad checkout, an emptied folder); if this is intended, rerun with {ALLOW_FLAG}",
    )
