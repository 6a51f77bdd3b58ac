"""Pure planning: from desired demos, status files and observed provider state to actions.

Owns `plan()`, the `Plan`/`DemoPlan`/`Action` values it returns and the desired DNS
records of a demo. Pure: no I/O, no clock (the time is a parameter), no
randomness, no logging. This package's face: it re-exports the names
callers use; the code lives in its modules (`actions`, `records`, `sight`,
`teardown`, `provision`, `orphans`, `decide`), each saying what it owns. May import
those modules only; never an adapter, git, httpx, cloudflare, kubernetes or psycopg.

The safety rules live here, because this is where "delete" is decided:
- a provider whose listing failed gets no delete and no create; one whose listing
  came back empty while status files say resources exist on it gets no delete
  (and, for Supabase and Kubernetes, no create that relies on absence; DNS records
  are still ensured, since ensuring adopts what exists);
- a failed load of demos/ deletes nothing anywhere;
- deleted demo files are torn down only within `guard.check_mass_deletion`;
- an invalid file of a live demo leaves it running (until its last valid expiry);
- orphans are deleted only after a grace period, duplicates only when the
  status names the one to keep; a live demo's marked DNS records that it no
  longer wants (a changed URL pattern) go only after its wanted ones are ensured.
"""

from reconciler.plan.actions import (
    Action,
    ActionKind,
    DemoPlan,
    Intent,
    Plan,
    PoolPlan,
    Witness,
)
from reconciler.plan.decide import plan
from reconciler.plan.provision import reset_token
from reconciler.plan.records import desired_records, namespace_of
from reconciler.plan.sight import Observed

__all__ = [
    "Action",
    "ActionKind",
    "DemoPlan",
    "Intent",
    "Observed",
    "Plan",
    "PoolPlan",
    "Witness",
    "desired_records",
    "namespace_of",
    "plan",
    "reset_token",
]
