"""Cloudflare DNS adapter: democtl's `DnsProvider` on the official `cloudflare` SDK.

Owns the conversation with Cloudflare's v4 DNS records API for one zone: listing
the records democtl manages, ensuring a demo's records (create, update in place,
adopt after "already exists") and deleting them, and converting every SDK
exception into `ProviderError` / `RateLimited` at this edge.

Ownership is the record comment `managed-by=democtl owner=<owner id> demo=<id>`
(reconciler/marks.py; comments hold at most 100 characters on the Free plan, tags are
paid-only). A record without this installation's exact mark (another owner id, or the
mark from before owner ids unless `adoptUnownedMarks`) is never listed as ours, changed
or deleted; a same-name record without it is a conflict reported to a human, never
overwritten. An adopted record of the old mark gets the new one at its next write.

Rate limits: a 429 blocks the token for minutes, so it is not retried here (the
SDK's own retry of 429 is switched off): it becomes `RateLimited` at once and the
next cycle tries again. A request budget (1,200 per five minutes per user, kept
true by the answers' `Ratelimit` header) refuses an operation before it starts once
it is spent, so the token is never blocked by democtl itself. 5xx, 408/409 and
connection errors are retried by the SDK (bounded, `max_retries`). The SDK retries
POST without an idempotency key, so a create whose answer was lost comes back as
81057/81053/81054 and is adopted; a name held by a record that is not ours is a
`Conflict`, never adopted or deleted.

May import: the standard library, `httpx`, `cloudflare`, `reconciler.marks`,
`reconciler.providers.base`, `reconciler.providers.budget` and
`reconciler.providers.http` (the client factory, not its retries).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import cloudflare
import httpx
from cloudflare.types.dns import record_list_params

from reconciler.marks import COMMENT_MAX, UNOWNED_COMMENT_PREFIX, Owner
from reconciler.providers.base import (
    SHORT_RETRY_AFTER,
    CertificatePack,
    Conflict,
    DesiredRecord,
    DnsRecord,
    ProviderError,
    RateLimited,
)
from reconciler.providers.budget import BudgetSpent, RequestBudget, parse_retry_after
from reconciler.providers.http import Network, RequestObserver, http_client

log = logging.getLogger(__name__)

PROVIDER = "cloudflare"
DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
MAX_PER_PAGE = 5_000_000  # the API's maximum (dns-records_per_page): one page for any real zone
TTL_AUTO = 1
# identical record / a CNAME where an A, AAAA or CNAME is / an A or AAAA where a CNAME is
DUPLICATE_CODES = frozenset({81057, 81053, 81054})
MISSING_CODES = frozenset({81044})  # record does not exist
NO_ROUTE_CODES = frozenset({7000, 7003})

RecordType = Literal["A", "AAAA", "CNAME"]


def ownership_comment(demo_id: str, owner: Owner | None = None) -> str:
    """The comment that marks a record as this installation's, for one demo."""
    owner = owner or Owner()
    comment = owner.record_comment(demo_id)
    if owner.record_demo(comment) != demo_id or len(comment) > COMMENT_MAX:
        raise ValueError(f"demo id {demo_id!r} cannot form an ownership comment")
    return comment


def owner_of(comment: str | None, owner: Owner | None = None) -> str | None:
    """The demo id in a comment this installation owns; None for anything else (case
    matters: Cloudflare's comment filters are case-insensitive, our mark is not)."""
    return (owner or Owner()).record_demo(comment)


class _Client(cloudflare.Cloudflare):
    """The SDK client without its retry of 429, but for one that asks for a short wait.

    A token over its limit is blocked for the rest of the five-minute window
    (https://developers.cloudflare.com/fundamentals/api/reference/limits), longer than
    any in-call backoff: the cycle records it and moves on. A 429 whose Retry-After is a
    second or less (RFC 9110 10.2.3) is no such block: it is tried again within the
    SDK's retries (its jittered backoff, or the stated wait), since a request refused
    with 429 was not carried out. Under 20 % faults, leaving each such 429 to the next
    cycle cost a demo being created five minutes."""

    def _should_retry(self, response: httpx.Response) -> bool:
        if response.status_code == 429:
            wait = _retry_after(response)
            return wait is not None and 0 <= wait <= SHORT_RETRY_AFTER
        return super()._should_retry(response)


@dataclass
class _Changes:
    deletes: list[DnsRecord] = field(default_factory=list)
    patches: list[tuple[DnsRecord, dict[str, Any]]] = field(default_factory=list)
    posts: list[tuple[DesiredRecord, dict[str, Any]]] = field(default_factory=list)
    unchanged: list[DnsRecord] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.deletes) + len(self.patches) + len(self.posts)


class CloudflareDns:
    """`DnsProvider` for one Cloudflare zone."""

    def __init__(
        self,
        token: str,
        zone: str,
        *,
        zone_id: str | None = None,
        base_url: str | None = None,
        max_retries: int = 2,
        per_page: int = MAX_PER_PAGE,
        use_batch: bool = True,
        timeout: float = 30.0,
        network: Network | None = None,
        owner: Owner | None = None,
        budget: RequestBudget | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        if not token:
            raise ProviderError(PROVIDER, "configure", "no API token (set CLOUDFLARE_API_TOKEN)")
        self.zone = zone.lower().rstrip(".")
        self.owner = owner or Owner()
        self._zone_id = zone_id or None
        self._per_page = per_page
        self._use_batch = use_batch
        self._secret = token
        # The token's user has one bucket for every call; the answers' `Ratelimit` header
        # keeps this account of it true.
        self.budget = budget or RequestBudget(limit=RATE_LIMIT, window=RATE_WINDOW)
        self._client = _Client(
            api_token=token,
            base_url=base_url or DEFAULT_BASE_URL,
            max_retries=max_retries,
            timeout=timeout,
            # The environment's proxies and CAs (`network`), loopback (an emulator) direct.
            http_client=http_client(
                timeout=timeout,
                network=network,
                event_hooks={"request": [self._sent], "response": [self._answered]},
                observer=observer,
                provider=PROVIDER,
            ),
        )
        # The SDK fills these from CLOUDFLARE_EMAIL / CLOUDFLARE_API_KEY /
        # CLOUDFLARE_API_USER_SERVICE_KEY when not given, and then prefers them over
        # the token; democtl authenticates with the token only.
        self._client.api_email = None
        self._client.api_key = None
        self._client.user_service_key = None

    def __repr__(self) -> str:
        return f"CloudflareDns(zone={self.zone!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CloudflareDns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- DnsProvider ----------------------------------------------------------------

    def list_records(self) -> list[DnsRecord]:
        """Every record of the zone carrying democtl's mark, in as few pages as the API allows."""
        # One listing per mark this installation owns (the filter leaves other owner ids
        # out on the server); the exact parse below decides.
        records: dict[str, DnsRecord] = {}
        for prefix in self.owner.record_comment_prefixes():
            for record in self._list("list records", None, comment={"startswith": prefix}):
                records[record.id] = record
        owned = [r for r in records.values() if r.demo_id is not None]
        log.debug("cloudflare: %d managed records in %s", len(owned), self.zone)
        return owned

    def ensure_records(self, demo_id: str, desired: list[DesiredRecord]) -> list[DnsRecord]:
        operation = "ensure records"
        for record in desired:
            if record.demo_id != demo_id:
                raise ProviderError(
                    PROVIDER,
                    operation,
                    f"record {record.name} is for {record.demo_id}",
                    demo_id=demo_id,
                )
        try:
            mark = ownership_comment(demo_id, self.owner)
        except ValueError as exc:
            raise ProviderError(PROVIDER, operation, str(exc), demo_id=demo_id) from None
        with self._edge(operation, demo_id):
            changes = self._diff(desired, self._owned(demo_id), mark)
            if not changes.writes:
                log.debug("%s: dns records up to date", demo_id)
                return _sorted(changes.unchanged)
            try:
                applied = self._apply(demo_id, changes)
            except cloudflare.BadRequestError as exc:
                if not _codes(exc) & DUPLICATE_CODES:
                    raise
                duplicate = _message(exc)
            else:
                return _sorted(changes.unchanged + applied)
            # Out of the except block, so no SDK exception rides along as context.
            # Either our own create went through although its answer was lost (the SDK
            # retried the POST), or someone else holds the name: read again.
            log.info("%s: dns record exists (%s), looking it up", demo_id, duplicate)
            changes = self._diff(desired, self._owned(demo_id), mark)
            for wanted, _body in changes.posts:
                self._refuse_foreign(demo_id, wanted)
            if not changes.writes:
                log.info("%s: adopted existing dns records", demo_id)
                return _sorted(changes.unchanged)
            applied = self._apply(demo_id, changes)
        return _sorted(changes.unchanged + applied)

    def delete_records(self, demo_id: str, records: list[DnsRecord]) -> None:
        operation = "delete records"
        for record in records:
            if self.owner.record_demo(record.comment) != demo_id:
                # Only what carries this demo's mark; anything else is a caller bug.
                raise ProviderError(
                    PROVIDER,
                    operation,
                    f"refusing to delete {record.type} {record.name}: not marked for this demo",
                    demo_id=demo_id,
                )
        if not records:
            return
        with self._edge(operation, demo_id):
            self._apply(demo_id, _Changes(deletes=list(records)))
        log.info("%s: deleted %d dns records", demo_id, len(records))

    # --- reads --------------------------------------------------------------------------

    @property
    def zone_id(self) -> str:
        """The zone's id, looked up by name once when not configured."""
        return self._zone(None)

    def _zone(self, demo_id: str | None) -> str:
        if self._zone_id is None:
            with self._edge("resolve zone", demo_id):
                page = self._client.zones.list(name=self.zone, per_page=5)
            ids = [z.id for z in page.result if z.name.lower() == self.zone]
            if not ids:
                raise ProviderError(
                    PROVIDER,
                    "resolve zone",
                    f"zone {self.zone} not found or not visible to the token",
                    demo_id=demo_id,
                )
            self._zone_id = ids[0]
        return self._zone_id

    def _owned(self, demo_id: str) -> list[DnsRecord]:
        marks = [ownership_comment(demo_id, self.owner)]
        if self.owner.adopt_unowned:
            marks.append(f"{UNOWNED_COMMENT_PREFIX}{demo_id}")
        records = [
            r
            for mark in marks
            for r in self._list("list records", demo_id, comment={"exact": mark})
        ]
        return [r for r in records if r.demo_id == demo_id]

    def _list(
        self,
        operation: str,
        demo_id: str | None,
        *,
        comment: record_list_params.Comment | None = None,
        name: str | None = None,
    ) -> list[DnsRecord]:
        zone_id = self._zone(demo_id)
        records: dict[str, DnsRecord] = {}
        with self._edge(operation, demo_id):
            page = self._client.dns.records.list(
                zone_id=zone_id,
                per_page=self._per_page,
                comment=comment if comment is not None else cloudflare.omit,
                # `name` as the 2024 contract spells it (the SDK's `name.exact` is newer).
                extra_query={"name": name} if name is not None else None,
            )
            while True:
                for item in page.result:
                    record = self._record(item)
                    if record.id in records:
                        raise ProviderError(
                            PROVIDER, operation, "pagination repeated a record", demo_id=demo_id
                        )
                    records[record.id] = record
                # A short page is the last one: saves the SDK's extra request for an empty page.
                size = (page.result_info.per_page if page.result_info else None) or self._per_page
                if len(page.result) < size:
                    break
                page = page.get_next_page()
        return list(records.values())

    def _refuse_foreign(self, demo_id: str, wanted: DesiredRecord) -> None:
        name = self._fqdn(wanted.name)
        for other in self._list("look up record", demo_id, name=name):
            clashes = other.type == wanted.type or "CNAME" in {other.type, wanted.type}
            if other.demo_id == demo_id or not clashes:
                continue
            owner = f"comment {other.comment!r}" if other.comment else "no comment"
            raise Conflict(
                PROVIDER,
                "ensure records",
                f"conflict: {other.type} {other.name} exists and is not ours ({owner}); "
                f"{wanted.type} {name} cannot be created beside it; "
                "remove or rename it, democtl will not overwrite it",
                demo_id=demo_id,
            )

    # --- DnsPreflight (democtl doctor): nothing is changed -----------------------------

    def verify_token(self) -> str:
        # https://developers.cloudflare.com/api/resources/user/subresources/tokens/methods/verify/
        with self._edge("verify token", None):
            answer = self._client.user.tokens.verify()
        if answer is None:
            raise ProviderError(PROVIDER, "verify token", "the answer has no result")
        return str(answer.status)

    def find_zone(self) -> str | None:
        if self._zone_id is not None:
            # a configured cloudflare.zoneId is never looked up by name: ask for it, so a
            # wrong or invisible id is found here and not at the first record
            try:
                with self._edge("get zone", None):
                    zone = self._client.zones.get(zone_id=self._zone_id)
            except ProviderError as exc:
                if exc.status_code in {403, 404}:
                    return None
                raise
            return self._zone_id if zone is not None and zone.name.lower() == self.zone else None
        try:
            return self._zone(None)
        except ProviderError as exc:
            if exc.status_code is not None:  # an API failure, not "no such zone"
                raise
            return None

    def can_read_records(self) -> bool:
        return self._permitted(
            "read records",
            lambda zone_id: self._client.dns.records.list(zone_id=zone_id, per_page=1),
        )

    def can_edit_records(self) -> bool:
        # An empty batch is authorised as a DNS write ("DNS Write" is the permission the batch
        # endpoint accepts: developers.cloudflare.com/api/resources/dns/subresources/records/
        # methods/batch/) and changes nothing: a 403 answers the question without a record.
        # Authorisation comes before the body is judged, so a 400 (a service that wants at
        # least one operation) still says the write was permitted.
        return self._permitted(
            "edit records",
            lambda zone_id: self._client.dns.records.batch(
                zone_id=zone_id, deletes=[], patches=[], posts=[], puts=[]
            ),
            judged={400, 422},
        )

    def certificate_packs(self) -> list[CertificatePack]:
        # https://developers.cloudflare.com/api/resources/ssl/subresources/certificate_packs/
        # methods/list/ ("status=all": pending packs too, so doctor can say one is not active)
        zone_id = self._zone(None)
        with self._edge("list certificate packs", None):
            packs = list(self._client.ssl.certificate_packs.list(zone_id=zone_id, status="all"))
        found = []
        for pack in packs:
            data: dict[str, Any] = pack.to_dict() if hasattr(pack, "to_dict") else dict(pack)
            hosts = tuple(str(h) for h in data.get("hosts") or ())
            found.append(
                CertificatePack(str(data.get("id", "")), str(data.get("type", "")),
                                str(data.get("status", "")), hosts)
            )  # fmt: skip
        return sorted(found, key=lambda p: p.id)

    def _permitted(
        self, operation: str, call: Any, *, judged: frozenset[int] | set[int] = frozenset()
    ) -> bool:
        """False when the API refuses the call for its permission (403); `judged`: statuses
        that mean the request got past authorisation and was refused on its content."""
        zone_id = self._zone(None)
        try:
            with self._edge(operation, None):
                call(zone_id)
        except ProviderError as exc:
            if exc.status_code == 403:
                return False
            if exc.status_code in judged:
                return True
            raise
        return True

    # --- writes -------------------------------------------------------------------------

    def _diff(self, desired: list[DesiredRecord], current: list[DnsRecord], mark: str) -> _Changes:
        changes = _Changes()
        by_name: dict[str, list[DnsRecord]] = {}
        for record in current:
            by_name.setdefault(record.name.lower(), []).append(record)
        for wanted in desired:
            name = self._fqdn(wanted.name)
            body = {
                "name": name,
                "type": wanted.type,
                "content": wanted.content,
                "proxied": wanted.proxied,
                # Automatic TTL: what Cloudflare stores for proxied records anyway, so
                # the next cycle sees no difference.
                "ttl": TTL_AUTO,
                "comment": mark,
            }
            same = [r for r in by_name.pop(name, [])]
            match = next((r for r in same if r.type == wanted.type), None)
            # Ours at this name with another type (e.g. CNAME -> A): delete first, the
            # batch runs deletes before posts.
            changes.deletes.extend(r for r in same if r is not match)
            if match is None:
                changes.posts.append((wanted, body))
            elif (
                _host(match.content) != _host(wanted.content)
                or match.proxied != wanted.proxied
                or match.ttl != TTL_AUTO
                or match.comment != mark  # an adopted record of the old mark: re-mark it
            ):
                changes.patches.append((match, body))
            else:
                changes.unchanged.append(match)
        return changes

    def _apply(self, demo_id: str, changes: _Changes) -> list[DnsRecord]:
        zone_id = self._zone(demo_id)
        records = self._client.dns.records
        if self._use_batch and changes.writes > 1:
            try:
                result = records.batch(
                    zone_id=zone_id,
                    deletes=[{"id": r.id} for r in changes.deletes],
                    # Bodies are built from validated settings (A, AAAA or CNAME).
                    patches=cast(Any, [{"id": r.id, **body} for r, body in changes.patches]),
                    posts=cast(Any, [body for _, body in changes.posts]),
                )
            except cloudflare.NotFoundError as exc:
                if _codes(exc) & MISSING_CODES and not changes.patches and not changes.posts:
                    # Some are gone already: delete one by one, where gone is success.
                    return self._apply_singly(demo_id, changes)
                if not _codes(exc) & NO_ROUTE_CODES:
                    raise
                log.warning("%s: dns batch endpoint unavailable, using single calls", demo_id)
                self._use_batch = False
            else:
                done = [*(result.patches or []), *(result.posts or [])] if result else []
                log.info(
                    "%s: dns batch: %d deleted, %d updated, %d created",
                    demo_id,
                    len(changes.deletes),
                    len(changes.patches),
                    len(changes.posts),
                )
                return [self._record(item) for item in done]
        return self._apply_singly(demo_id, changes)

    def _apply_singly(self, demo_id: str, changes: _Changes) -> list[DnsRecord]:
        zone_id = self._zone(demo_id)
        records = self._client.dns.records
        done: list[DnsRecord] = []
        for record in changes.deletes:
            try:
                records.delete(record.id, zone_id=zone_id)
            except cloudflare.NotFoundError as exc:
                if not _codes(exc) & MISSING_CODES:
                    raise
                log.info("%s: dns record %s %s already gone", demo_id, record.type, record.name)
            else:
                log.info("%s: deleted dns record %s %s", demo_id, record.type, record.name)
        for record, body in changes.patches:
            updated = records.edit(record.id, zone_id=zone_id, **_typed(body))
            log.info("%s: updated dns record %s %s", demo_id, record.type, record.name)
            done.append(self._record(updated))
        for _wanted, body in changes.posts:
            created = records.create(zone_id=zone_id, **_typed(body))
            log.info("%s: created dns record %s %s", demo_id, body["type"], body["name"])
            done.append(self._record(created))
        return done

    def _fqdn(self, name: str) -> str:
        name = name.lower().rstrip(".")
        if name in {"@", self.zone} or name.endswith("." + self.zone):
            return self.zone if name == "@" else name
        return f"{name}.{self.zone}"

    # --- the error edge ---------------------------------------------------------------

    def _sent(self, request: httpx.Request) -> None:
        # counted, never refused here: the SDK would take a refusal for a network error
        # and retry it; `_edge` refuses before an operation starts instead
        with suppress(BudgetSpent):
            self.budget.take(_USER)

    def _answered(self, response: httpx.Response) -> None:
        self.budget.observe_headers(_USER, response.headers, response.status_code)

    @contextmanager
    def _edge(self, operation: str, demo_id: str | None) -> Iterator[None]:
        """Every SDK exception leaves the adapter as ProviderError; the token never does.

        An operation the budget knows would be refused is not started: it is RateLimited
        at once, without a request, and the cycle leaves it for later."""
        left = self.budget.left(_USER)
        if left is not None and left <= 0:
            wait = self.budget.refill_in(_USER)
            log.info("%s: cloudflare %s deferred for %.0fs", demo_id or "-", operation, wait)
            raise RateLimited(
                PROVIDER,
                operation,
                "deferred, not sent: the request budget of the token is spent",
                demo_id=demo_id,
                retryable=True,
                retry_after=wait,
            )
        try:
            yield
        except ProviderError:
            raise
        except cloudflare.RateLimitError as exc:
            retry_after = _retry_after(exc.response)
            log.warning(
                "%s: cloudflare rate limit on %s; leaving it for a later cycle (retry after %ss)",
                demo_id or "-",
                operation,
                retry_after,
            )
            raise RateLimited(
                PROVIDER,
                operation,
                self._redact(_message(exc)),
                demo_id=demo_id,
                retryable=True,
                retry_after=retry_after,
                status_code=429,
            ) from None
        except cloudflare.APIStatusError as exc:
            raise ProviderError(
                PROVIDER,
                operation,
                self._redact(_message(exc)),
                demo_id=demo_id,
                retryable=exc.status_code >= 500 or exc.status_code in {408, 409},
                status_code=exc.status_code,
            ) from None
        except cloudflare.APIConnectionError as exc:
            raise ProviderError(
                PROVIDER,
                operation,
                self._redact(f"{type(exc).__name__}: {exc}"),
                demo_id=demo_id,
                retryable=True,
            ) from None
        except cloudflare.CloudflareError as exc:
            raise ProviderError(
                PROVIDER, operation, self._redact(f"{type(exc).__name__}: {exc}"), demo_id=demo_id
            ) from None

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]")

    def _record(self, item: Any) -> DnsRecord:
        data: dict[str, Any] = item.to_dict() if hasattr(item, "to_dict") else dict(item)
        comment = str(data.get("comment") or "")
        return DnsRecord(
            id=str(data["id"]),
            name=str(data["name"]),
            type=str(data["type"]),
            content=str(data.get("content") or ""),
            proxied=bool(data.get("proxied", False)),
            ttl=int(data.get("ttl", TTL_AUTO)),
            comment=comment,
            demo_id=self.owner.record_demo(comment),
        )


# --- helpers ----------------------------------------------------------------------------


def _sorted(records: list[DnsRecord]) -> list[DnsRecord]:
    return sorted(records, key=lambda r: (r.name, r.type))


def _typed(body: dict[str, Any]) -> Any:
    """The SDK's per-type overloads want a literal `type`; the body's is one of A/AAAA/CNAME."""
    return body


def _host(content: str) -> str:
    """Content as Cloudflare stores it: hostnames lower-case without the root dot,
    addresses in canonical form (so "2001:db8:0::1" is not a change every cycle)."""
    try:
        return str(ipaddress.ip_address(content))
    except ValueError:
        return content.lower().rstrip(".")


def _codes(exc: cloudflare.APIError) -> set[int]:
    body = exc.body if isinstance(exc.body, dict) else {}
    errors = body.get("errors") or []
    return {int(e["code"]) for e in errors if isinstance(e, dict) and "code" in e}


def _message(exc: cloudflare.APIError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    status = getattr(exc, "status_code", None)
    detail = "; ".join(f"[{e.get('code')}] {e.get('message')}" for e in errors)
    return f"HTTP {status}: {detail or exc.message}"


_USER = "user"
# 1,200 requests per five minutes per user, then blocked for the rest of the five minutes
# (https://developers.cloudflare.com/fundamentals/api/reference/limits).
RATE_LIMIT = 1200
RATE_WINDOW = 300.0


def _retry_after(response: httpx.Response) -> float | None:
    # delta-seconds or an HTTP-date (RFC 9110 10.2.3), as the SDK's own backoff reads it
    return parse_retry_after(response.headers.get("retry-after"))
