"""The ResourceQuota controller the emulator plays: each quota's `status.used` from its pods.

Owns quota accounting as the kube-controller-manager's quota controller does it:
`requests.*`/`limits.*` summed over the namespace's pods' containers, `cpu`/`memory`
counted as requests, `pods`/`count/pods` as the pod count
(https://kubernetes.io/docs/concepts/policy/resource-quotas/). May import the store and
the quantity helpers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from reconciler.local.kubernetes.store import ObjectStore
from reconciler.quantity import format_cpu, format_memory, parse_quantity


class QuotaController:
    """Keeps every ResourceQuota's status in step with its namespace's pods (store lock held)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def refresh(self, namespaces: Iterable[str] | None) -> None:
        """Recount the quotas of `namespaces` (None: every quota, as on a fresh start)."""
        if namespaces is None:
            quotas = self.store.all("resourcequotas")
        else:
            quotas = [
                quota
                for namespace in sorted(set(namespaces))
                for quota in self.store.in_namespace("resourcequotas", namespace)
            ]
        for quota in quotas:
            self._set_status(quota)

    def _set_status(self, quota: dict[str, Any]) -> None:
        hard = dict((quota.get("spec") or {}).get("hard") or {})
        pods = self.store.in_namespace("pods", quota["metadata"]["namespace"])
        totals: dict[str, Decimal] = {}
        for pod in pods:
            for container in pod["spec"]["containers"]:
                resources = container.get("resources") or {}
                for section in ("requests", "limits"):
                    for resource, value in (resources.get(section) or {}).items():
                        key = f"{section}.{resource}"
                        totals[key] = totals.get(key, Decimal(0)) + parse_quantity(str(value))
        used: dict[str, str] = {}
        for resource in hard:
            counted = {"cpu": "requests.cpu", "memory": "requests.memory"}.get(resource, resource)
            if resource in {"pods", "count/pods"}:
                used[resource] = str(len(pods))
            elif counted.endswith("cpu"):
                used[resource] = format_cpu(totals.get(counted, Decimal(0)))
            elif counted.endswith("memory"):
                used[resource] = format_memory(totals.get(counted, Decimal(0)))
        status = {"hard": hard, "used": used}
        if quota.get("status") != status:
            updated = copy.deepcopy(quota)
            updated["status"] = status
            self.store.put("resourcequotas", updated)
