"""Edge-certificate coverage: the TLS matching rule and the settings check built on it."""

from __future__ import annotations

import pytest

from reconciler.certs import covers, uncovered_hosts


@pytest.mark.parametrize(
    "name, host, expected",
    [
        pytest.param("example.com", "example.com", True, id="apex-exact"),
        pytest.param("*.example.com", "demo-x.example.com", True, id="wildcard-one-label"),
        pytest.param("*.example.com", "a.b.example.com", False, id="wildcard-not-two-labels"),
        pytest.param("*.example.com", "example.com", False, id="wildcard-not-apex"),
        pytest.param("*.portal.example.com", "demo-x.portal.example.com", True, id="advanced"),
        pytest.param("*.EXAMPLE.com", "Demo-X.example.com.", True, id="case-and-trailing-dot"),
        pytest.param("a.example.com", "b.example.com", False, id="exact-other-name"),
    ],
)
def test_covers(name: str, host: str, expected: bool) -> None:
    assert covers(name, host) is expected


def hosts(pattern: str, domain: str) -> dict[str, str]:
    return {kind: pattern.format(kind=kind, id="demo-x", domain=domain) for kind in ("portal",)}


@pytest.mark.parametrize(
    "pattern, domain, proxied, certificates, uncovered",
    [
        pytest.param(
            "{id}.{kind}.{domain}",
            "demo.splits.network",
            True,
            [],
            ["portal"],
            id="old-default-two-levels-deep-is-refused",
        ),
        pytest.param(
            "{id}-{kind}.{domain}",
            "splits.network",
            True,
            [],
            [],
            id="one-level-under-the-zone-is-covered",
        ),
        pytest.param(
            "{id}.{kind}.{domain}",
            "splits.network",
            True,
            ["*.portal.splits.network"],
            [],
            id="declared-advanced-certificate",
        ),
        pytest.param(
            "{id}.{kind}.{domain}",
            "demo.splits.network",
            False,
            [],
            [],
            id="dns-only-records-use-cluster-certificates",
        ),
        pytest.param(
            "{id}-{kind}.{domain}",
            "other.org",
            False,
            [],
            ["portal"],
            id="outside-the-zone-is-refused-even-dns-only",
        ),
    ],
)
def test_uncovered_hosts(
    pattern: str, domain: str, proxied: bool, certificates: list[str], uncovered: list[str]
) -> None:
    found = uncovered_hosts(
        hosts(pattern, domain), "splits.network", proxied=proxied, certificates=certificates
    )
    assert [u.kind for u in found] == uncovered


def test_the_refusal_names_the_options() -> None:
    [problem] = uncovered_hosts(
        {"portal": "demo-x.portal.demo.splits.network"}, "splits.network", proxied=True
    )
    assert "one level" in problem.reason
    assert "'{id}-portal.{domain}'" in problem.reason
    assert "*.portal.demo.splits.network" in problem.reason
    assert "proxied: false" in problem.reason
