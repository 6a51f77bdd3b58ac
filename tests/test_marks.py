"""The ownership marks as truth tables: format, parse, and what an installation claims.

Each mark (Supabase project name, Cloudflare record comment, Kubernetes labels) is read
back into `Mark(demo id, owner id)`; `Owner.claims` says whether this installation may
touch the resource: its own owner id always, the old unowned mark only when adopting.
"""

from __future__ import annotations

import pytest

from reconciler.marks import (
    COMMENT_MAX,
    LABEL_VALUE_MAX,
    PROJECT_NAME_MAX,
    Mark,
    Owner,
    labels,
    owner_id_problem,
    parse_labels,
    parse_project_name,
    parse_record_comment,
    project_name,
    record_comment,
)
from reconciler.model import Settings
from reconciler.workspace import read_settings
from tests.test_plan import PROJECT

LONGEST_DEMO = "demo-" + "a" * 27  # demo ids hold at most 32 characters
P = "democtl-"
ID, MB, OW = (
    "demos.splits.network/id",
    "app.kubernetes.io/managed-by",
    "demos.splits.network/owner-id",
)


@pytest.mark.parametrize(
    "name, mark",
    [
        pytest.param("democtl-prod.demo-acme01", Mark("demo-acme01", "prod"), id="owned"),
        pytest.param("democtl-demo-acme01", Mark("demo-acme01", None), id="old-mark-is-unowned"),
        pytest.param(
            "democtl-demo.demo-x", Mark("demo-x", "demo"), id="owner-id-that-looks-like-a-demo"
        ),
        pytest.param("democtl-a-b.demo-x-y", Mark("demo-x-y", "a-b"), id="hyphens-on-both-sides"),
        pytest.param("other-prod.demo-acme01", None, id="another-prefix"),
        pytest.param("democtl-prod.acme01", None, id="not-a-demo-id"),
        pytest.param("democtl-Prod.demo-acme01", None, id="upper-case-owner"),
        pytest.param("democtl-prod.demo-acme01.x", None, id="trailing-text"),
        pytest.param("democtl-.demo-acme01", None, id="empty-owner"),
        pytest.param("democtl-prod-demo-acme01", None, id="hyphen-is-no-separator"),
        pytest.param(f"democtl-prod.{LONGEST_DEMO}b", None, id="demo-id-too-long"),
        pytest.param("my project", None, id="hand-made-project"),
    ],
)
def test_project_name_is_parsed_strictly(name: str, mark: Mark | None) -> None:
    assert parse_project_name(P, name) == mark


@pytest.mark.parametrize(
    "comment, mark",
    [
        pytest.param(
            "managed-by=democtl owner=prod demo=demo-acme01",
            Mark("demo-acme01", "prod"),
            id="owned",
        ),
        pytest.param(
            "managed-by=democtl demo=demo-acme01",
            Mark("demo-acme01", None),
            id="old-mark-is-unowned",
        ),
        pytest.param("managed-by=democtl owner=prod demo=demo-a extra", None, id="trailing-text"),
        pytest.param("x managed-by=democtl owner=prod demo=demo-a", None, id="leading-text"),
        pytest.param("MANAGED-BY=DEMOCTL OWNER=PROD DEMO=demo-a", None, id="case-differs"),
        pytest.param("managed-by=democtl owner= demo=demo-a", None, id="empty-owner"),
        pytest.param("managed-by=democtl owner=prod", None, id="no-demo"),
        pytest.param("", None, id="no-comment"),
        pytest.param(None, None, id="null-comment"),
    ],
)
def test_record_comment_is_parsed_strictly(comment: str | None, mark: Mark | None) -> None:
    assert parse_record_comment(comment) == mark


@pytest.mark.parametrize(
    "found, mark",
    [
        pytest.param({MB: "democtl", ID: "demo-a", OW: "prod"}, Mark("demo-a", "prod"), id="owned"),
        pytest.param({MB: "democtl", ID: "demo-a"}, Mark("demo-a", None), id="old-mark-is-unowned"),
        pytest.param(
            {MB: "democtl", ID: "demo-a", OW: "Not_Valid"},
            Mark("demo-a", ""),
            id="garbled-owner-is-nobodys",
        ),
        pytest.param({MB: "helm", ID: "demo-a", OW: "prod"}, None, id="another-manager"),
        pytest.param({MB: "democtl", OW: "prod"}, None, id="no-demo-id"),
        pytest.param({MB: "democtl", ID: "kube-system", OW: "prod"}, None, id="not-a-demo-id"),
        pytest.param({}, None, id="no-labels"),
        pytest.param(None, None, id="null-labels"),
    ],
)
def test_labels_are_parsed_strictly(found: dict[str, str] | None, mark: Mark | None) -> None:
    assert parse_labels(found) == mark


@pytest.mark.parametrize(
    "owner, mark, claimed",
    [
        pytest.param(Owner("prod"), Mark("demo-a", "prod"), "demo-a", id="own-owner-id-is-ours"),
        pytest.param(
            Owner("prod"), Mark("demo-a", "staging"), None, id="another-owner-id-is-foreign"
        ),
        pytest.param(Owner("prod"), Mark("demo-a", None), None, id="unowned-is-foreign-by-default"),
        pytest.param(
            Owner("prod", adopt_unowned=True),
            Mark("demo-a", None),
            "demo-a",
            id="unowned-is-adopted-when-asked",
        ),
        pytest.param(
            Owner("prod", adopt_unowned=True),
            Mark("demo-a", "staging"),
            None,
            id="adopting-never-takes-another-owner-id",
        ),
        pytest.param(
            Owner("prod", adopt_unowned=True),
            Mark("demo-a", ""),
            None,
            id="garbled-owner-is-never-adopted",
        ),
        pytest.param(Owner("prod"), None, None, id="no-mark-is-foreign"),
    ],
)
def test_what_an_installation_claims(owner: Owner, mark: Mark | None, claimed: str | None) -> None:
    assert owner.claims(mark) == claimed


@pytest.mark.parametrize("owner_id", ["default", "prod", "a", "team-7", "x" * 23])
def test_every_mark_round_trips(owner_id: str) -> None:
    owner = Owner(owner_id)
    assert parse_project_name(P, project_name(P, owner_id, LONGEST_DEMO)) == Mark(
        LONGEST_DEMO, owner_id
    )
    assert parse_record_comment(record_comment(owner_id, LONGEST_DEMO)) == Mark(
        LONGEST_DEMO, owner_id
    )
    assert parse_labels(labels(owner_id, LONGEST_DEMO)) == Mark(LONGEST_DEMO, owner_id)
    assert owner.project_demo(P, owner.project_name(P, LONGEST_DEMO)) == LONGEST_DEMO
    assert owner.record_demo(owner.record_comment(LONGEST_DEMO)) == LONGEST_DEMO
    assert owner.label_demo(owner.labels(LONGEST_DEMO)) == LONGEST_DEMO
    # the longest owner id the default prefix allows fits every mark's limit
    assert len(project_name(P, owner_id, LONGEST_DEMO)) <= PROJECT_NAME_MAX
    assert len(record_comment(owner_id, LONGEST_DEMO)) <= COMMENT_MAX
    assert len(owner_id) <= LABEL_VALUE_MAX


def test_the_listing_filters_cover_exactly_the_claimed_comments() -> None:
    assert Owner("prod").record_comment_prefixes() == ("managed-by=democtl owner=prod demo=",)
    adopting = Owner("prod", adopt_unowned=True).record_comment_prefixes()
    assert adopting == ("managed-by=democtl owner=prod demo=", "managed-by=democtl demo=")
    assert record_comment("prod", "demo-a").startswith(adopting[0])
    # the filter `owner=prod demo=` ends at the space, so `owner=prod2` is outside it;
    # the exact parse is what decides in any case
    assert Owner("prod").record_demo(record_comment("prod2", "demo-a")) is None


@pytest.mark.parametrize(
    "owner_id, prefix, problem",
    [
        pytest.param("default", "democtl-", None, id="default-fits"),
        pytest.param("x" * 23, "democtl-", None, id="longest-with-the-default-prefix"),
        pytest.param(
            "x" * 24,
            "democtl-",
            "at most 23 fit into the Supabase project name",
            id="one-too-long-for-the-project-name",
        ),
        pytest.param("x" * 10, "p" * 21, None, id="longest-prefix-leaves-ten"),
        pytest.param("x" * 11, "p" * 21, "at most 10 fit", id="longest-prefix-one-too-many"),
        pytest.param(
            "x" * 32, "", "at most 31 fit", id="the-project-name-binds-before-the-comment"
        ),
        pytest.param("Prod", "democtl-", "lowercase DNS label", id="upper-case"),
        pytest.param("-prod", "democtl-", "lowercase DNS label", id="leading-hyphen"),
        pytest.param("prod.eu", "democtl-", "lowercase DNS label", id="dot-is-the-separator"),
        pytest.param("", "democtl-", "lowercase DNS label", id="empty"),
    ],
)
def test_owner_id_must_fit_every_mark(owner_id: str, prefix: str, problem: str | None) -> None:
    found = owner_id_problem(owner_id, prefix)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def _settings(**top: object) -> dict[str, object]:
    base = read_settings(PROJECT).settings
    assert base is not None
    return {**base.model_dump(mode="json"), **top}


def test_settings_default_to_the_default_owner_that_adopts_nothing() -> None:
    settings = Settings.model_validate(_settings())
    assert settings.owner == Owner("default", adopt_unowned=False)


def test_settings_refuse_an_owner_id_too_long_for_the_prefix() -> None:
    data = _settings(ownerId="x" * 15)
    data["supabase"] = {**data["supabase"], "projectPrefix": "a-twenty-char-prefix"}  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"ownerId\n.*'x{15}' is 15 characters; at most 11 fit"):
        Settings.model_validate(data)
