"""Which demo hostnames an edge certificate covers: the check behind `validate` and `doctor`.

Owns the TLS name-matching rule and the question "would a browser get a certificate error
for this URL pattern?". Pure: imports the model only; no I/O.

Why it exists: Cloudflare's Universal SSL certificate covers the zone apex and one level of
subdomain only (`example.com` and `*.example.com`); "Universal SSL certificates only cover
the apex and one level of subdomain" (developers.cloudflare.com/ssl/edge-certificates/
universal-ssl/limitations/). A proxied record two levels deep, such as
`demo-x.portal.demo.example.com`, is served with no valid certificate, so every browser and
every health probe fails on TLS. A wildcard matches exactly one label (RFC 6125 §6.4.3), so
`*.example.com` does not cover `a.b.example.com`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# A stand-in id that has the shape of every demo id, so patterns are judged as hostnames.
SAMPLE_ID = "demo-x"


def covers(certificate_name: str, hostname: str) -> bool:
    """True when one certificate name (exact or `*.` wildcard of one label) matches hostname."""
    name = certificate_name.lower().rstrip(".")
    host = hostname.lower().rstrip(".")
    if not name.startswith("*."):
        return name == host
    label, _, rest = host.partition(".")
    return bool(label) and rest == name[2:]


def universal_names(zone: str) -> tuple[str, str]:
    """The names Cloudflare's Universal SSL certificate carries for a zone."""
    return (zone, f"*.{zone}")


def in_zone(hostname: str, zone: str) -> bool:
    return hostname == zone or hostname.endswith(f".{zone}")


@dataclass(frozen=True)
class Uncovered:
    """One URL kind whose hostnames no edge certificate covers, and what would fix it."""

    kind: str  # portal | candidate | api
    hostname: str  # the hostname for SAMPLE_ID
    reason: str


def uncovered_hosts(
    hosts: Mapping[str, str],
    zone: str,
    *,
    proxied: bool,
    certificates: Iterable[str] = (),
    universal: bool = True,
) -> list[Uncovered]:
    """The URL kinds whose hostnames would meet no valid edge certificate.

    `hosts` maps a URL kind to its hostname for one demo. DNS-only records (`proxied`
    false) are served by the cluster's own certificates, which Cloudflare does not see:
    only the zone membership is checked then. `universal` false: only `certificates`
    count (doctor passes the names of the zone's active certificate packs, which include
    Universal SSL's pack while it is enabled and active).
    """
    names = [*(universal_names(zone) if universal else ()), *certificates]
    found: list[Uncovered] = []
    for kind, host in sorted(hosts.items()):
        if not in_zone(host, zone):
            found.append(Uncovered(kind, host, f"is outside the Cloudflare zone {zone!r}"))
        elif proxied and not any(covers(name, host) for name in names):
            found.append(
                Uncovered(
                    kind,
                    host,
                    "is not covered by an edge certificate: Cloudflare's Universal SSL covers "
                    f"{zone} and *.{zone} only (one level). Use one-level names such as "
                    f"'{{id}}-{kind}.{{domain}}' with domain {zone!r}, order an Advanced "
                    f"certificate for '*.{host.partition('.')[2]}' and list it under "
                    "cloudflare.certificates, or set cloudflare.proxied: false and issue "
                    "certificates in the cluster",
                )
            )
    return found
