"""What the Cloudflare emulator's token may do, and the zone's edge certificates.

Owns `TokenPolicy`: the token's status (what `GET /user/tokens/verify` answers), the
permission groups it holds, each endpoint's permission, and the zone's certificate packs
(`GET /zones/{zone_id}/ssl/certificate_packs`). By default the token is active and holds
what democtl needs, and the zone has Universal SSL's active pack (the apex and one level:
developers.cloudflare.com/ssl/edge-certificates/universal-ssl/limitations/); tests take
permissions away or change the packs to rehearse what `democtl doctor` must catch.
May import the standard library only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Permission groups by the names the dashboard gives them (Zone > Zone > Read, Zone > DNS >
# Edit, Zone > SSL and Certificates > Read): developers.cloudflare.com/fundamentals/api/
# reference/permissions/. "Edit" includes "Read", as the documentation says.
ZONE_READ = "zone:read"
DNS_READ = "dns:read"
DNS_EDIT = "dns:edit"
SSL_READ = "ssl:read"
ALL_PERMISSIONS = frozenset({ZONE_READ, DNS_READ, DNS_EDIT, SSL_READ})
_IMPLIED = {DNS_READ: DNS_EDIT}
# The answer of the API to a token without the permission an endpoint needs.
AUTH_ERROR = (403, 10000, "Authentication error")


def universal_pack(zone_name: str) -> dict[str, Any]:
    """Universal SSL's pack for a zone, shaped as certificate_packs lists it."""
    pack_id = hashlib.sha256(f"pack/{zone_name}".encode()).hexdigest()[:32]
    return {
        "id": pack_id,
        "type": "universal",
        "hosts": [zone_name, f"*.{zone_name}"],
        "status": "active",
        "validation_method": "txt",
        "validity_days": 90,
        "certificate_authority": "google",
        "cloudflare_branding": False,
        "certificates": [],
        "primary_certificate": "0",
    }


@dataclass
class TokenPolicy:
    """The emulated token: its status and permission groups; the zone's certificate packs."""

    status: str = "active"  # active | disabled | expired
    permissions: frozenset[str] = ALL_PERMISSIONS
    # None: Universal SSL's active pack for the zone
    certificate_packs: list[dict[str, Any]] | None = None
    token_id: str = field(default="ed17574386854bf78a67040be0a770b0")

    def allows(self, permission: str) -> bool:
        return permission in self.permissions or _IMPLIED.get(permission) in self.permissions

    def refusal(self, permission: str) -> tuple[int, int, str] | None:
        """(status, code, message) when the token may not do this; None when it may."""
        if self.status != "active":
            return (401, 1000, "Invalid API Token")
        return None if self.allows(permission) else AUTH_ERROR

    def verify(self) -> dict[str, Any]:
        # GET /user/tokens/verify: developers.cloudflare.com/api/resources/user/subresources/
        # tokens/methods/verify/ (result: id, status, expires_on, not_before)
        return {"id": self.token_id, "status": self.status}

    def packs(self, zone_name: str, *, all_statuses: bool) -> list[dict[str, Any]]:
        """The packs; only active ones unless `status=all` was asked, as the API lists them."""
        packs = self.certificate_packs
        if packs is None:
            packs = [universal_pack(zone_name)]
        return [dict(p) for p in packs if all_statuses or p.get("status") == "active"]
