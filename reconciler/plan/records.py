"""What a demo wants outside the cluster: its namespace name, DNS records and health URLs.

Owns `namespace_of`, `desired_records`, `health_urls` and `records_match` (the
comparison of listed against wanted records). Pure. May import `marks`, the model and
the provider value types; never another module of this package, an adapter, git, httpx,
cloudflare, kubernetes or psycopg.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from reconciler.marks import parse_record_comment
from reconciler.model import Settings
from reconciler.providers.base import DesiredRecord, DnsRecord

# --- helpers ----------------------------------------------------------------------------

_HEALTH_HOSTS: dict[str, Literal["portal", "candidate", "api"]] = {
    "portal": "portal",
    "candidate": "candidate",
    "apiGateway": "api",
}


def namespace_of(demo_id: str) -> str:
    """A demo's namespace is named after it (ids are valid namespace names)."""
    return demo_id


def desired_records(settings: Settings, demo_id: str) -> tuple[DesiredRecord, ...]:
    """The DNS records a demo needs: portal, candidate and API hosts, sorted by name."""
    cf = settings.cloudflare
    return tuple(
        DesiredRecord(demo_id, host, cf.recordType, cf.target, cf.proxied)
        for host in sorted(settings.hosts(demo_id).values())
    )


def health_urls(settings: Settings, demo_id: str) -> tuple[tuple[str, str], ...]:
    """(HealthChecks field, the https health endpoint probed for it)."""
    return tuple(
        (check, f"https://{settings.url_for(host, demo_id)}/health")
        for check, host in _HEALTH_HOSTS.items()
    )


def _host(name: str) -> str:
    return name.lower().rstrip(".")


def _record_key(name: str, type_: str, content: str, proxied: bool) -> tuple[str, str, str, bool]:
    return (_host(name), type_.upper(), _host(content), proxied)


def _old_mark(record: DnsRecord) -> bool:
    """Carries the mark from before owner ids (an adopted record): it is to be re-marked."""
    mark = parse_record_comment(record.comment)
    return mark is not None and mark.owner_id is None


def records_match(observed: Sequence[DnsRecord], desired: Sequence[DesiredRecord]) -> bool:
    """Every wanted record is there, with the current mark (an adopted record of the old
    mark does not count, so ENSURE_DNS re-marks it)."""
    have = {_record_key(r.name, r.type, r.content, r.proxied) for r in observed if not _old_mark(r)}
    want = {_record_key(r.name, r.type, r.content, r.proxied) for r in desired}
    return want <= have
