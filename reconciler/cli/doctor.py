"""`democtl doctor`: a preflight of the services a real demo needs, before the first one.

Parse, call, print: the questions are `doctor`'s, the adapters (or the emulators with
--local) are `wiring`'s. One line per check, ok or the problem with what to do; exit 1
when any check failed. May import the shared CLI options, doctor and wiring.
"""

from __future__ import annotations

import json
import sys

import click

from reconciler import wiring
from reconciler.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    common_options,
    format_option,
    load_settings_or_exit,
)


@click.command("doctor")
@format_option("text", "json")
@common_options(unused={"--now": "the services are checked as they are now."})
def doctor_cmd(fmt: str, ctx: Context) -> None:
    """Check, before the first real demo, what would fail: tokens, permissions, certificates.

    Asks Supabase (token, organisation, plan, region, size, projects), Cloudflare (token,
    zone, DNS permission, edge certificates for every demo hostname), Kubernetes (API,
    every permission democtl uses, the GitOps CRDs, the ingress namespace) and the git
    remote (reachable, branch, lock push). Changes nothing. Exit 0 when all pass, 1 when
    any fails. With --local, against the emulators.
    """
    settings = load_settings_or_exit(ctx.repo)
    from reconciler import doctor

    with wiring.open_preflight(ctx.repo, settings, local=ctx.local) as preflight:
        checks = doctor.run_checks(settings, preflight)
    failed = [c for c in checks if not c.ok]
    if fmt == "json":
        click.echo(
            json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, indent=2)
        )
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            if check.ok:
                click.echo(f"ok       {check.name.ljust(width)}  {check.detail}")
            else:
                click.echo(f"PROBLEM  {check.name.ljust(width)}  {check.problem}")
                if check.advice:
                    click.echo(f"         {' ' * width}  -> {check.advice}")
        click.echo(
            f"{len(failed)} of {len(checks)} checks failed" if failed else "all checks passed"
        )
    sys.exit(EXIT_FAILED if failed else EXIT_OK)
