"""Where `KubernetesEmulator` used to live; kept only for `reconciler/cli.py`'s import.

The emulator is the package `reconciler.local.kubernetes` now; import it from there.
This module re-exports its face and can go once nothing imports it.
"""

from reconciler.local.kubernetes import (
    KubernetesEmulator,
    selector_matches,
    status_body,
    value_digest,
)

__all__ = ["KubernetesEmulator", "selector_matches", "status_body", "value_digest"]
