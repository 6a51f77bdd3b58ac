"""doctor's decisions as a truth table, on in-memory answers (no I/O): what passes, what fails,
and which questions are not asked once the one they depend on failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from reconciler.doctor import Check, Preflight, run_checks
from reconciler.model import Settings
from reconciler.providers.base import CertificatePack, Organization, Permission, ProviderError
from reconciler.workspace import read_settings
from tests.gitrepo import PROJECT


@dataclass
class Answers:
    """Every preflight Protocol at once, answering from fields and recording the questions."""

    orgs: list[Organization] = field(
        default_factory=lambda: [Organization("splits-network-demos", "Splits")]
    )
    plan: str = "pro"
    projects: int = 0
    token: str = "active"
    zone: str | None = "zone-1"
    packs: list[CertificatePack] = field(
        default_factory=lambda: [
            CertificatePack("u", "universal", "active", ("splits.network", "*.splits.network"))
        ]
    )
    denied: set[Permission] = field(default_factory=set)
    crds: set[str] = field(default_factory=lambda: {"helmreleases.helm.toolkit.fluxcd.io"})
    fail: dict[str, ProviderError] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def _ask(self, name: str) -> None:
        self.asked.append(name)
        if name in self.fail:
            raise self.fail[name]

    def organizations(self) -> list[Organization]:
        self._ask("organizations")
        return self.orgs

    def organization(self, slug: str) -> Organization:
        self._ask("organization")
        return Organization(slug, slug, self.plan)

    def organization_project_count(self, slug: str) -> int:
        self._ask("count")
        return self.projects

    def verify_token(self) -> str:
        self._ask("verify")
        return self.token

    def find_zone(self) -> str | None:
        self._ask("zone")
        return self.zone

    def can_read_records(self) -> bool:
        self._ask("read")
        return True

    def can_edit_records(self) -> bool:
        self._ask("edit")
        return True

    def certificate_packs(self) -> list[CertificatePack]:
        self._ask("packs")
        return self.packs

    def server_version(self) -> str:
        self._ask("version")
        return "v1.31.0"

    def can_i(self, permission: Permission) -> bool:
        self._ask("review")
        return permission not in self.denied

    def crd_installed(self, name: str) -> bool:
        self._ask("crd")
        return name in self.crds

    def namespace_exists(self, name: str) -> bool:
        self._ask("namespace")
        return True

    def remote(self) -> list[Any]:
        self._ask("git")
        return []


SECRETS_CREATE = Permission("", "secrets", "create")


def settings(**supabase: Any) -> Settings:
    found = read_settings(PROJECT)
    assert found.settings is not None
    base = found.settings
    return base.model_copy(update={"supabase": base.supabase.model_copy(update=supabase)})


def checks(answers: Answers, the_settings: Settings | None = None) -> dict[str, Check]:
    preflight = Preflight(
        supabase=answers, dns=answers, cluster=answers, git=answers.remote,
        permissions=[SECRETS_CREATE], crds=["helmreleases.helm.toolkit.fluxcd.io"],
    )  # fmt: skip
    return {c.name: c for c in run_checks(the_settings or settings(), preflight)}


def _failed(found: dict[str, Check]) -> set[str]:
    return {name for name, check in found.items() if not check.ok}


REFUSED = ProviderError("supabase", "list organizations", "HTTP 401: Unauthorized", status_code=401)
DOWN = ProviderError("kubernetes", "get version", "connection refused", retryable=True)


@pytest.mark.parametrize(
    "answers, failed, not_asked",
    [
        pytest.param(Answers(), set(), set(), id="all-well"),
        pytest.param(
            Answers(fail={"organizations": REFUSED}),
            {"supabase.token"},
            {"organization", "count"},
            id="token-refused-asks-no-more",
        ),
        pytest.param(
            Answers(orgs=[Organization("other", "Other")]),
            {"supabase.organization"},
            {"organization", "count"},
            id="unknown-org-asks-no-plan",
        ),
        pytest.param(
            Answers(plan="free"), {"supabase.size", "supabase.projects"}, set(), id="free-plan"
        ),
        pytest.param(
            Answers(token="disabled"),
            {"cloudflare.token"},
            {"zone", "packs"},
            id="token-disabled-asks-no-more",
        ),
        pytest.param(
            Answers(zone=None),
            {"cloudflare.zone"},
            {"read", "edit", "packs"},
            id="no-zone-asks-no-more",
        ),
        pytest.param(
            Answers(packs=[]), {"cloudflare.certificates"}, set(), id="no-active-certificate"
        ),
        pytest.param(
            Answers(denied={SECRETS_CREATE}),
            {"kubernetes.permissions"},
            set(),
            id="permission-denied",
        ),
        pytest.param(Answers(crds=set()), {"kubernetes.crds"}, set(), id="crd-missing"),
        pytest.param(
            Answers(fail={"version": DOWN}),
            {"kubernetes.api"},
            {"review", "crd", "namespace"},
            id="cluster-down-asks-no-more",
        ),
    ],
)
def test_what_fails_and_what_is_not_asked(
    answers: Answers, failed: set[str], not_asked: set[str]
) -> None:
    assert _failed(checks(answers)) == failed
    assert not not_asked & set(answers.asked)


@pytest.mark.parametrize(
    "projects, max_demos, ok, room",
    [
        pytest.param(0, 2, True, 2, id="empty-org-room-for-two"),
        pytest.param(1, 2, False, 1, id="one-taken"),
        pytest.param(2, 0, True, 0, id="full-but-nothing-wanted"),
        pytest.param(5, 1, False, 0, id="over-the-limit-means-none"),
    ],
)
def test_free_plan_room_is_the_limit_less_what_the_org_holds(
    projects: int, max_demos: int, ok: bool, room: int
) -> None:
    base = settings(size="micro")
    the_settings = base.model_copy(
        update={"capacity": base.capacity.model_copy(update={"maxConcurrentDemos": max_demos})}
    )
    found = checks(Answers(plan="free", projects=projects), the_settings)["supabase.projects"]
    assert found.ok is ok
    assert f"democtl may create {room}" in (found.detail if ok else found.problem)
