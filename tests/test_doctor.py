"""`democtl doctor` against the emulators: it passes where all is well, and names each problem.

Real click runner, real git (a bare origin and a clone), the real adapters over HTTP to
the loopback emulators in production mode (tokens and KUBECONFIG from the environment,
the API URLs from reconciler.yaml), each emulator set to refuse one thing the real
service would refuse. Every failing case asserts which checks fail and that all the
others pass, so a check that always failed (or never did) would be caught.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.local.cloudflare_access import DNS_EDIT, SSL_READ, ZONE_READ, universal_pack
from reconciler.local.cloudflare_emulator import CloudflareEmulator
from reconciler.local.kubernetes import KubernetesEmulator
from reconciler.local.kubernetes.access import AccessPolicy
from reconciler.local.postgres import LocalPostgres
from reconciler.local.stack import kubeconfig_document
from reconciler.local.supabase_emulator import SupabaseEmulator
from tests.gitrepo import BASE_TIME, PROJECT, commit_as, git, origin_and_clone

ORG = "splits-network-demos"
ZONE = "splits.network"
ALL_CHECKS = {
    "supabase.token", "supabase.region", "supabase.organization", "supabase.size",
    "supabase.projects", "cloudflare.token", "cloudflare.zone", "cloudflare.dns",
    "cloudflare.certificates", "kubernetes.api", "kubernetes.permissions", "kubernetes.crds",
    "kubernetes.ingress", "git.remote", "git.branch", "git.lock",
}  # fmt: skip


@dataclass
class World:
    """The emulators, a state repository pointed at them, and the environment doctor gets."""

    tmp: Path
    origin: Path
    repo: Path
    supabase: SupabaseEmulator
    cloudflare: CloudflareEmulator
    kubernetes: KubernetesEmulator
    env: dict[str, str | None] = field(default_factory=dict)

    def settings(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Commit a change to reconciler.yaml (pushed, so the remote agrees)."""
        data = yaml.safe_load((self.repo / "reconciler.yaml").read_text())
        change(data)
        commit_as(self.repo, when=BASE_TIME, files={"reconciler.yaml": yaml.safe_dump(data)})
        git(self.repo, "push", "--quiet", "origin", "main")

    def doctor(self, *args: str) -> tuple[int, dict[str, Any], str]:
        result = CliRunner().invoke(
            cli, ["doctor", "--repo", str(self.repo), "--format", "json", *args], env=self.env
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, json.loads(result.stdout), result.output

    def failing(self) -> dict[str, str]:
        code, report, output = self.doctor()
        failed = {c["name"]: f"{c['problem']} -> {c['advice']}" for c in report["checks"]}
        failed = {n: t for n, t in failed.items() if not _ok(report, n)}
        assert (code == 1) == bool(failed), output
        assert report["ok"] is not bool(failed)
        return failed


def _ok(report: dict[str, Any], name: str) -> bool:
    return bool(next(c["ok"] for c in report["checks"] if c["name"] == name))


@pytest.fixture
def world(tmp_path: Path, supabase_postgres: LocalPostgres) -> Iterator[World]:
    state = tmp_path / "emulators"
    state.mkdir()
    supabase = SupabaseEmulator(state, supabase_postgres, clock=time.time, organizations=(ORG,))
    cloudflare = CloudflareEmulator(state, zone_name=ZONE)
    kubernetes = KubernetesEmulator(
        state, source=None, access=AccessPolicy.with_namespaces(["ingress-nginx"])
    )
    with supabase, cloudflare, kubernetes:
        data = yaml.safe_load((PROJECT / "reconciler.yaml").read_text())
        data["supabase"]["apiUrl"] = supabase.url
        data["cloudflare"]["apiUrl"] = cloudflare.api_url
        origin, repo = origin_and_clone(tmp_path, {"reconciler.yaml": yaml.safe_dump(data)})
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(kubernetes.url)))
        env: dict[str, str | None] = {
            "SUPABASE_ACCESS_TOKEN": "sbp_doctor_test",
            "CLOUDFLARE_API_TOKEN": "cf-doctor-test",
            "KUBECONFIG": str(kubeconfig),
            "KUBERNETES_SERVICE_HOST": None,
            "GITHUB_TOKEN": None,
        }
        yield World(tmp_path, origin, repo, supabase, cloudflare, kubernetes, env)


def test_every_check_passes_against_services_that_allow_everything(world: World) -> None:
    code, report, output = world.doctor()
    assert code == 0, output
    assert {c["name"] for c in report["checks"]} == ALL_CHECKS
    assert all(c["ok"] for c in report["checks"]), output
    # nothing was created, changed or deleted anywhere
    assert world.cloudflare.inspect()["records"] == []
    assert world.supabase.inspect()["projects"] == []
    text = CliRunner().invoke(cli, ["doctor", "--repo", str(world.repo)], env=world.env)
    assert text.exit_code == 0
    lines = text.output.splitlines()
    assert len(lines) == len(ALL_CHECKS) + 1 and lines[-1] == "all checks passed"
    assert all(line.startswith("ok ") for line in lines[:-1])


def _unknown_org(w: World) -> None:
    w.settings(lambda d: d["supabase"].update(organization="someone-elses-org"))


def _free_plan(w: World) -> None:
    w.supabase.plans[ORG] = "free"


def _region(w: World) -> None:
    w.settings(lambda d: d["supabase"].update(region="mars-north-1"))


def _no_supabase_token(w: World) -> None:
    w.env["SUPABASE_ACCESS_TOKEN"] = None


def _no_token_and_a_bad_region(w: World) -> None:
    w.env["SUPABASE_ACCESS_TOKEN"] = None
    _region(w)


def _token_expired(w: World) -> None:
    w.cloudflare.token.status = "expired"


def _no_dns_edit(w: World) -> None:
    w.cloudflare.token.permissions = frozenset({ZONE_READ, SSL_READ})


def _no_zone_read(w: World) -> None:
    w.cloudflare.token.permissions = frozenset({DNS_EDIT, SSL_READ})


def _wrong_zone_id(w: World) -> None:
    w.settings(lambda d: d["cloudflare"].update(zoneId="0123456789abcdef0123456789abcdef"))


def _right_zone_id(w: World) -> None:
    w.settings(lambda d: d["cloudflare"].update(zoneId=w.cloudflare.zone_id))


def _no_ssl_read(w: World) -> None:
    w.cloudflare.token.permissions = frozenset({ZONE_READ, DNS_EDIT})


def _universal_pending(w: World) -> None:
    w.cloudflare.token.certificate_packs = [
        {**universal_pack(ZONE), "status": "pending_validation"}
    ]


def _advanced_not_ordered(w: World) -> None:
    # settings that validate (the certificate is declared) but the zone has no such pack
    def change(d: dict[str, Any]) -> None:
        d["urls"]["portal"] = "{id}.portal.{domain}"
        d["cloudflare"]["certificates"] = ["*.portal.splits.network"]

    w.settings(change)


def _secret_create_denied(w: World) -> None:
    w.kubernetes.access.denied.add(("", "secrets", "create"))


def _release_patch_denied(w: World) -> None:
    w.kubernetes.access.denied.add(("helm.toolkit.fluxcd.io", "helmreleases", "patch"))


def _no_flux(w: World) -> None:
    w.kubernetes.access.crds -= {"helmreleases.helm.toolkit.fluxcd.io"}


def _argo_without_argo(w: World) -> None:
    w.kubernetes.access.crds = {c for c in w.kubernetes.access.crds if "argoproj" not in c}
    w.settings(lambda d: d.update(gitops="argo"))


def _no_ingress(w: World) -> None:
    w.settings(lambda d: d["kubernetes"].update(ingressNamespace="traefik"))


def _cluster_unreachable(w: World) -> None:
    (w.tmp / "kubeconfig").write_text(yaml.safe_dump(kubeconfig_document("http://127.0.0.1:9")))


def _no_such_branch(w: World) -> None:
    w.settings(lambda d: d["git"].update(branch="production"))


def _remote_gone(w: World) -> None:
    git(w.repo, "remote", "set-url", "origin", str(w.tmp / "moved.git"))


def _push_refused(w: World) -> None:
    # fetching works, pushing does not: a read-only deploy key, say
    git(w.repo, "remote", "set-url", "--push", "origin", str(w.tmp / "no-push.git"))


@pytest.mark.parametrize(
    "breakage, expected",
    [
        pytest.param(
            _unknown_org, {"supabase.organization": "someone-elses-org"}, id="unknown-organisation"
        ),
        pytest.param(
            _free_plan,
            {
                "supabase.size": "free plan, which cannot choose a compute size",
                "supabase.projects": "may create 2, fewer than capacity.maxConcurrentDemos (20)",
            },
            id="free-plan",
        ),
        pytest.param(_region, {"supabase.region": "'mars-north-1' is not a region"}, id="region"),
        pytest.param(
            _no_supabase_token, {"supabase.token": "SUPABASE_ACCESS_TOKEN"}, id="no-supabase-token"
        ),
        pytest.param(
            _no_token_and_a_bad_region,
            {"supabase.token": "SUPABASE_ACCESS_TOKEN", "supabase.region": "'mars-north-1'"},
            id="no-token-still-checks-the-region",
        ),
        pytest.param(
            _token_expired,
            {"cloudflare.token": "the token is expired"},
            id="cloudflare-token-expired",
        ),
        pytest.param(_no_dns_edit, {"cloudflare.dns": "may not read or edit"}, id="no-dns-edit"),
        pytest.param(
            _no_zone_read,
            {"cloudflare.zone": "no zone 'splits.network' is visible"},
            id="no-zone-read",
        ),
        pytest.param(_right_zone_id, {}, id="configured-zone-id"),
        pytest.param(
            _wrong_zone_id,
            {"cloudflare.zone": "with the id '0123456789abcdef0123456789abcdef'"},
            id="wrong-zone-id",
        ),
        pytest.param(
            _no_ssl_read,
            {"cloudflare.certificates": "SSL and Certificates > Read"},
            id="no-ssl-read",
        ),
        pytest.param(
            _universal_pending,
            {"cloudflare.certificates": "not active: universal"},
            id="universal-ssl-not-active",
        ),
        pytest.param(
            _advanced_not_ordered,
            {"cloudflare.certificates": "urls.portal: demo-x.portal.splits.network is not covered"},
            id="declared-certificate-not-active",
        ),
        pytest.param(
            _secret_create_denied,
            {"kubernetes.permissions": "create secrets (cluster-wide)"},
            id="secret-create-denied",
        ),
        pytest.param(
            _release_patch_denied,
            {"kubernetes.permissions": "patch helmreleases.helm.toolkit.fluxcd.io"},
            id="release-patch-denied",
        ),
        pytest.param(
            _no_flux,
            {"kubernetes.crds": "helmreleases.helm.toolkit.fluxcd.io"},
            id="flux-not-installed",
        ),
        pytest.param(
            _argo_without_argo,
            {"kubernetes.crds": "applications.argoproj.io"},
            id="argo-not-installed",
        ),
        pytest.param(
            _no_ingress,
            {"kubernetes.ingress": "'traefik' does not exist"},
            id="no-ingress-namespace",
        ),
        pytest.param(
            _cluster_unreachable,
            {"kubernetes.api": "kubernetes get version"},
            id="cluster-unreachable",
        ),
        pytest.param(
            _no_such_branch, {"git.branch": "no branch 'production'"}, id="no-such-branch"
        ),
        pytest.param(
            _remote_gone, {"git.remote": "git ls-remote origin failed"}, id="remote-unreachable"
        ),
        pytest.param(
            _push_refused,
            {"git.lock": "refs/democtl/lock to origin is refused"},
            id="lock-push-refused",
        ),
    ],
)
def test_each_problem_is_named_with_what_to_do(
    world: World, breakage: Callable[[World], None], expected: dict[str, str]
) -> None:
    breakage(world)
    failed = world.failing()
    assert set(failed) == set(expected), failed
    for name, text in expected.items():
        assert text in failed[name], failed[name]
        assert " -> " in failed[name] and not failed[name].endswith(" -> "), "no advice given"


def test_the_text_report_gives_one_line_per_check_and_the_advice(world: World) -> None:
    _free_plan(world)
    result = CliRunner().invoke(cli, ["doctor", "--repo", str(world.repo)], env=world.env)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert [p.split()[1] for p in problems] == ["supabase.size", "supabase.projects"]
    advice = [line.strip() for line in lines if line.strip().startswith("->")]
    assert len(advice) == 2 and "upgrade the organisation" in advice[0]
    assert lines[-1] == f"2 of {len(ALL_CHECKS)} checks failed"


def test_no_token_reaches_the_report(world: World) -> None:
    world.cloudflare.token.status = "disabled"
    _, report, output = world.doctor()
    for token in ("sbp_doctor_test", "cf-doctor-test"):
        assert token not in output
    assert not _ok(report, "cloudflare.token")


def test_doctor_local_passes_on_the_sample_state_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMOCTL_LOCAL_COME_UP_SECONDS", "0")
    for name in ("SUPABASE_ACCESS_TOKEN", "CLOUDFLARE_API_TOKEN", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    files = {"reconciler.yaml": (PROJECT / "reconciler.yaml").read_bytes()}
    for path in sorted((PROJECT / "demos").glob("*.yaml")):
        files[f"demos/{path.name}"] = path.read_bytes()
    _, repo = origin_and_clone(tmp_path, files)
    head = git(repo, "rev-parse", "HEAD")
    result = CliRunner().invoke(cli, ["doctor", "--local", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "all checks passed"
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""  # .democtl/ ignores itself
    inspect = CliRunner().invoke(cli, ["local", "inspect", "--format", "json", "--repo", str(repo)])
    world = json.loads(inspect.output)
    assert world["kubernetes"]["namespaces"] == []  # the system ones are not the world's
    assert world["cloudflare"]["records"] == []
    assert world.get("supabase", {}).get("projects", []) == []


def test_a_state_folder_that_is_no_git_repository_is_a_problem_not_a_crash(world: World) -> None:
    plain = world.tmp / "plain"
    plain.mkdir()
    (plain / "reconciler.yaml").write_bytes((world.repo / "reconciler.yaml").read_bytes())
    world.repo = plain
    failed = world.failing()
    assert set(failed) == {"git.remote"}
    assert "is not a git repository" in failed["git.remote"]
