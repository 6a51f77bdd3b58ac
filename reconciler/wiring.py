"""Building the providers a command runs against: the real services or the local emulators.

Owns the choice between production adapters (credentials from the environment
only) and `--local` (emulators on loopback, no credentials, no network), and the
scratch state repository local mode reconciles in. The CLI calls this; the loop
receives the finished `Providers` and never knows which world it talks to.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from reconciler import database, gitstate
from reconciler.apply import Providers
from reconciler.local.stack import LocalStack, local_state_dir
from reconciler.model import Settings
from reconciler.providers.base import ProviderError
from reconciler.providers.cloudflare import CloudflareDns
from reconciler.providers.kubernetes import KubernetesCluster
from reconciler.providers.probe import HttpxProber
from reconciler.providers.supabase import SupabaseManagementClient

SCRATCH = "state"


class CredentialsMissing(Exception):
    """A production run without the credentials it needs; exit 2 and say which."""


def local_state_repo(repo: Path) -> Path:
    """The scratch clone local mode reconciles in, under the git-ignored state folder."""
    return local_state_dir(repo) / SCRATCH


def cycle_repo(repo: Path, settings: Settings, *, local: bool, push: bool, now: datetime) -> Path:
    """The working tree a cycle commits in.

    With --push the cycle runs in `repo` itself (a checkout of the state
    repository, as in CI). Local mode without --push works in a scratch clone,
    so the branch the user is working on never receives democtl's commits.
    """
    if local and not push:
        return gitstate.scratch_state_repo(
            repo, local_state_repo(repo), gitstate.Identity.from_settings(settings), when=now
        )
    return repo


@contextmanager
def plan_repo(repo: Path, settings: Settings, *, local: bool, now: datetime) -> Iterator[Path]:
    """Where `plan` reads the state: what the next cycle would start from, changing nothing.

    Local mode plans on a throwaway copy of the scratch state with the user's
    branch merged in, exactly as the next `reconcile --local` would merge it, so a
    demo committed since (or a first run, whose clocks start now) is planned as
    it will be reconciled; the scratch itself is left as it is.
    """
    if not local:
        yield repo
        return
    with tempfile.TemporaryDirectory(prefix="democtl-plan-") as tmp:
        preview = Path(tmp) / SCRATCH
        scratch = local_state_repo(repo)
        if (scratch / ".git").exists():
            shutil.copytree(scratch, preview, symlinks=True)
        identity = gitstate.Identity.from_settings(settings)
        yield gitstate.scratch_state_repo(repo, preview, identity, when=now)


@contextmanager
def open_providers(
    repo: Path, workdir: Path, settings: Settings, *, local: bool
) -> Iterator[Providers]:
    """The providers for one command; local mode starts (and stops) the emulators."""
    if local:
        come_up = float(os.environ.get("DEMOCTL_LOCAL_COME_UP_SECONDS", "2"))
        with LocalStack(local_state_dir(repo), workdir, settings, come_up_seconds=come_up) as stack:
            yield local_providers(stack)
        return
    yield production_providers(settings)


def local_providers(stack: LocalStack) -> Providers:
    """Production adapters pointed at a running stack's emulators."""
    return Providers(
        supabase=stack.supabase_client(),
        dns=stack.dns(),
        cluster=stack.cluster(),
        prober=stack.prober(),
        migrate=database.migrate,
        seed=database.seed,
    )


def production_providers(settings: Settings) -> Providers:
    missing = [
        v for v in ("SUPABASE_ACCESS_TOKEN", "CLOUDFLARE_API_TOKEN") if not os.environ.get(v)
    ]
    if missing:
        raise CredentialsMissing(
            f"{' and '.join(missing)} not set; democtl reads credentials only from the "
            "environment (or run with --local to use the emulators)"
        )
    try:
        return Providers(
            supabase=SupabaseManagementClient.from_environment(settings),
            dns=CloudflareDns(
                os.environ["CLOUDFLARE_API_TOKEN"],
                settings.cloudflare.zone,
                zone_id=settings.cloudflare.zoneId,
                base_url=settings.cloudflare.apiUrl,
            ),
            cluster=KubernetesCluster.from_environment(
                gitops=settings.gitops, secret_name=settings.kubernetes.secretName
            ),
            prober=HttpxProber(),
            migrate=database.migrate,
            seed=database.seed,
        )
    except ProviderError as exc:
        raise CredentialsMissing(str(exc)) from None
