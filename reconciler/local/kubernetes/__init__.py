"""A Kubernetes API emulator on loopback that also plays Flux's (or Argo CD's) part.

The package is split along the seams of the system it imitates:

- `store`: the object store behind the API server (etcd's part) and its persistence;
- `selectors`: label selectors;
- `apiserver`: HTTP routing, discovery, reads, lists and Secret writes;
- `access`: who may do what (403s, SelfSubjectAccessReviews), the CRDs, the namespaces a
  prepared cluster starts with;
- `gitops`: the GitOps controller stand-in syncing `rendered/` (Flux's Kustomization);
- `releases`: what helm-controller and Argo CD decide for one release (retries, resets);
- `workloads`: releases, their pods and readiness;
- `quota`: ResourceQuota accounting;
- `health`: the demos' `/health` endpoints by Host header;
- `emulator`: `KubernetesEmulator`, which wires them and serves them on loopback.

This module is the face callers import; it re-exports and holds nothing else.
"""

from reconciler.local.kubernetes.access import AccessPolicy
from reconciler.local.kubernetes.apiserver import status_body
from reconciler.local.kubernetes.emulator import (
    DEFAULT_SECRET_NAME,
    REDACTED,
    KubernetesEmulator,
)
from reconciler.local.kubernetes.selectors import selector_matches
from reconciler.local.kubernetes.store import (
    ARGO,
    FLUX,
    RESOURCES,
    STATE_FILE,
    value_digest,
)

__all__ = [
    "ARGO",
    "DEFAULT_SECRET_NAME",
    "FLUX",
    "REDACTED",
    "RESOURCES",
    "STATE_FILE",
    "AccessPolicy",
    "KubernetesEmulator",
    "selector_matches",
    "status_body",
    "value_digest",
]
