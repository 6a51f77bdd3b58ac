"""Rendering for the cluster side as Flux and Argo CD behave: private chart registries,
the network policy's DNS and Supabase egress, evaluated against destinations."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from reconciler.manifests import ManifestSchemas, validate_rendered
from reconciler.model import Settings
from reconciler.render import render_demo
from reconciler.validate import expiry_of
from tests.test_render import (
    CREATED,
    docs_of,
    find,
    load_project_settings,
    objects,
    sample,
    status_for,
)


@pytest.fixture(scope="module")
def schemas() -> ManifestSchemas:
    # the packaged schemas democtl renders against (reconciler/manifest_schemas)
    return ManifestSchemas()


def with_settings(flavour: str, **changes: dict[str, Any]) -> Settings:
    base = load_project_settings(flavour)
    data = base.model_dump(mode="json", exclude_unset=False)
    for key, value in changes.items():
        data[key] = {**(data.get(key) or {}), **value}
    return Settings.model_validate(data)


def render(settings: Settings, schemas: ManifestSchemas) -> dict[str, bytes]:
    demo = sample("demo-acme01")
    files = render_demo(
        demo,
        settings,
        expires_at=expiry_of(demo, settings, CREATED),
        status=status_for(demo, supabase=True),
    )
    parsed = [d for docs in docs_of(files).values() for d in docs]
    assert validate_rendered(parsed, schemas) == []
    return files


# --- private chart registries -------------------------------------------------------------


@pytest.mark.parametrize(
    "repository, kind",
    [
        pytest.param("oci://ghcr.io/splits-network/charts", "OCIRepository", id="oci"),
        pytest.param("https://charts.example.com", "HelmRepository", id="https"),
    ],
)
def test_pull_secret_is_the_flux_sources_secret_ref(
    repository: str, kind: str, schemas: ManifestSchemas
) -> None:
    settings = with_settings("flux", chart={"repository": repository, "pullSecret": "ghcr-pull"})
    source = find(render(settings, schemas), kind)
    assert source["spec"]["secretRef"] == {"name": "ghcr-pull"}


def test_no_pull_secret_no_secret_ref(schemas: ManifestSchemas) -> None:
    source = find(render(with_settings("flux"), schemas), "OCIRepository")
    assert "secretRef" not in source["spec"]


def test_argo_application_never_names_the_repository_credential(
    schemas: ManifestSchemas,
) -> None:
    # Argo CD matches a repository credential Secret to the Application by URL; the
    # Application has no field for it, so the render must stay valid and unchanged.
    plain = render(with_settings("argo"), schemas)
    private = render(with_settings("argo", chart={"pullSecret": "ghcr-pull"}), schemas)
    assert plain == private
    assert all(o["kind"] != "Secret" for o in objects(private))


# --- network policy: egress evaluated against destinations ---------------------------------


def egress_allows(files: dict[str, bytes], ip: str, port: int, protocol: str = "TCP") -> bool:
    """Does any egress rule of the namespace's policies let a pod reach ip:port by IP?

    NetworkPolicy semantics: rules are OR'd; a rule's peers are OR'd; an ipBlock matches an
    address inside `cidr` and outside every `except`; a rule without ports allows all ports
    (https://kubernetes.io/docs/concepts/services-networking/network-policies/). Peers that
    select pods match no bare IP here; the demo's own pods are not what is being asked.
    """
    address = ipaddress.ip_address(ip)
    for policy in docs_of(files)["networkpolicy.yaml"]:
        for rule in policy["spec"].get("egress") or []:
            ports = rule.get("ports")
            if ports is not None and not any(
                p.get("protocol", "TCP") == protocol and p.get("port") == port for p in ports
            ):
                continue
            for peer in rule.get("to") or []:
                block = peer.get("ipBlock")
                if block is None:
                    continue
                network = ipaddress.ip_network(block["cidr"])
                if address.version != network.version or address not in network:
                    continue
                if any(address in ipaddress.ip_network(e) for e in block.get("except") or []):
                    continue
                return True
    return False


SUPABASE_DIRECT_V6 = "2600:1f18:2e13:9d00:6a0e:4e0d:1d3b:1f4b"  # an AWS us-east-1 address
SUPABASE_POOLER_V4 = "52.45.94.125"


def test_nodelocal_dns_and_ipv6_supabase_are_reachable(schemas: ManifestSchemas) -> None:
    settings = with_settings(
        "flux",
        kubernetes={
            "networkPolicy": {
                "dns": {"cidrs": ["169.254.20.10/32"]},
                "supabase": {"ipv6": ["::/0"]},
            }
        },
    )
    files = render(settings, schemas)
    assert egress_allows(files, "169.254.20.10", 53, "UDP")
    assert egress_allows(files, "169.254.20.10", 53, "TCP")
    for port in (5432, 6543, 443):
        assert egress_allows(files, SUPABASE_DIRECT_V6, port)
        assert egress_allows(files, SUPABASE_POOLER_V4, port)
    # still closed: other ports, other link-local addresses (cloud metadata), private ranges
    assert not egress_allows(files, SUPABASE_DIRECT_V6, 22)
    assert not egress_allows(files, "169.254.169.254", 80)
    assert not egress_allows(files, "169.254.20.10", 443)
    assert not egress_allows(files, "10.1.2.3", 5432)
    assert not egress_allows(files, "fd00::1", 5432)
    assert not egress_allows(files, "fe80::1", 443)


def test_defaults_cover_nodelocal_dns_but_not_ipv6(schemas: ManifestSchemas) -> None:
    files = render(with_settings("flux"), schemas)
    assert egress_allows(files, "169.254.20.10", 53, "UDP")
    assert not egress_allows(files, SUPABASE_DIRECT_V6, 5432)
    assert egress_allows(files, SUPABASE_POOLER_V4, 6543)
    dns_rule = docs_of(files)["networkpolicy.yaml"][2]["spec"]["egress"][1]
    assert dns_rule["to"][0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }


def test_dns_elsewhere_and_given_ranges(schemas: ManifestSchemas) -> None:
    settings = with_settings(
        "flux",
        kubernetes={
            "networkPolicy": {
                "dns": {
                    "selectors": [{"namespace": "dns", "podLabels": {"app": "coredns"}}],
                    "cidrs": ["10.96.0.10/32"],
                },
                "supabase": {"ipv4": ["52.0.0.0/8"], "ipv6": ["2600:1f18::/32"], "ports": [6543]},
            }
        },
    )
    files = render(settings, schemas)
    rule = docs_of(files)["networkpolicy.yaml"][2]["spec"]["egress"][1]
    assert rule["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "dns"
    }
    assert egress_allows(files, "10.96.0.10", 53, "UDP")
    assert not egress_allows(files, "169.254.20.10", 53, "UDP")
    assert egress_allows(files, SUPABASE_DIRECT_V6, 6543)
    assert not egress_allows(files, SUPABASE_DIRECT_V6, 5432)
    assert egress_allows(files, SUPABASE_POOLER_V4, 6543)
    assert not egress_allows(files, "8.8.8.8", 6543)


@pytest.mark.parametrize(
    "policy, field",
    [
        pytest.param({"dns": {"cidrs": ["169.254.20.10"]}}, "cidrs", id="dns-cidr-no-prefix-ok"),
        pytest.param({"dns": {"cidrs": ["10.0.0.1/8"]}}, "cidrs", id="host-bits-set"),
        pytest.param({"supabase": {"ipv4": ["::/0"]}}, "ipv4", id="v6-in-ipv4"),
        pytest.param({"supabase": {"ipv6": ["0.0.0.0/0"]}}, "ipv6", id="v4-in-ipv6"),
        pytest.param({"supabase": {"ports": [70000]}}, "ports", id="port-range"),
    ],
)
def test_bad_network_policy_settings_are_refused(policy: dict[str, Any], field: str) -> None:
    if field == "cidrs" and policy["dns"]["cidrs"] == ["169.254.20.10"]:
        # a bare address is a /32 network, which ipaddress accepts: normalized, not refused
        settings = with_settings("flux", kubernetes={"networkPolicy": policy})
        assert settings.kubernetes.networkPolicy.dns.cidrs == ["169.254.20.10/32"]
        return
    with pytest.raises(ValueError, match=field):
        with_settings("flux", kubernetes={"networkPolicy": policy})
