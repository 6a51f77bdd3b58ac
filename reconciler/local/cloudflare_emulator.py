"""A Cloudflare DNS API emulator on loopback: zones and dns_records, v4 envelope and all.

Owns the emulated zone and its records (persisted as JSON under `state_dir`) and
the HTTP API the real `cloudflare` SDK talks to (base URL `<url>/client/v4`):
`GET /zones` and `GET /zones/{id}`, `GET /user/tokens/verify`, the zone's
certificate packs (what the token may do, and the packs: `cloudflare_access`), the
dns_records list (page/per_page with `result_info`, name,
type, content and comment filters), create, get, patch, put, delete and the
batch endpoint (deletes, patches, puts, posts, in that order, all or nothing).
It follows the upstream contract in ../shared/specs and the behaviours the
adapter must survive: an empty page past the last one (the SDK pages until it
sees one), 81057 on duplicates, 81053/81054 on CNAME conflicts, 9xxx validation
errors, comments capped at 100 characters (Free plan), proxied records stored
with TTL 1, and faults (429 with Retry-After, 5xx, drops) from the shared server.

The global rate limit (1,200 requests per five minutes per user, `local.ratelimit`)
answers every call with `Ratelimit`/`Ratelimit-Policy` headers.

May import: the standard library, `reconciler.local.ratelimit` and
`reconciler.local.server`. Never stores or
logs a token: requests are recorded by auth scheme only.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.local.cloudflare_access import DNS_EDIT, DNS_READ, SSL_READ, ZONE_READ, TokenPolicy
from reconciler.local.ratelimit import FixedWindowLimiter
from reconciler.local.server import EmulatorServer, Faults, Request, Response, ServedEmulator

log = logging.getLogger(__name__)

API_PREFIX = "/client/v4"
COMMENT_MAX = 100  # Free plan
PER_PAGE_MAX = 5_000_000  # dns-records_per_page maximum in the spec
ZONES_PER_PAGE = (5, 50)
TTL_AUTO = 1
ADDRESS_TYPES = frozenset({"A", "AAAA", "CNAME"})
RECORD_TYPES = frozenset(
    {"A", "AAAA", "CAA", "CERT", "CNAME", "DNSKEY", "DS", "HTTPS", "LOC", "MX", "NAPTR"}
    | {"NS", "PTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI", "OPENPGPKEY"}
)
PROXIABLE_TYPES = ADDRESS_TYPES
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

# Error codes the real API answers with (the 9xxx validation codes are this
# emulator's choice in Cloudflare's validation range).
IDENTICAL_EXISTS = 81057
HOST_CONFLICT = 81053  # a CNAME where an A, AAAA or CNAME record has the name
CNAME_CONFLICT = 81054  # an A or AAAA where a CNAME record has the name
# Cloudflare's troubleshooting page for both, which the 81054 message links to
SAME_NAME_DOCS = "https://developers.cloudflare.com/dns/manage-dns-records/troubleshooting/records-with-same-name/"
NOT_FOUND = 81044
NO_ROUTE = 7003
INVALID_NAME = 9000
INVALID_CONTENT = 9005
INVALID_TYPE = 9004
INVALID_TTL = 9021
INVALID_PROXIED = 9020
COMMENT_TOO_LONG = 9100
INVALID_REQUEST = 9207
INVALID_PAGINATION = 9102
AUTH_ERROR = 10000
RATE_LIMITED = 1015
# The global limit: 1,200 requests per five minutes per user, then blocked for the rest of
# the five minutes (https://developers.cloudflare.com/fundamentals/api/reference/limits).
RATE_LIMIT = 1200
RATE_WINDOW = 300.0
SERVER_ERROR = 10001


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def envelope_error(status: int, message: str, code: int | None = None) -> dict[str, Any]:
    """Cloudflare's failure envelope; the shared server uses it for injected faults too."""
    if code is None:
        code = {429: RATE_LIMITED, 404: NO_ROUTE}.get(
            status, SERVER_ERROR if status >= 500 else 1000
        )
    return {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }


def _ok(result: Any, result_info: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return Response(200, body)


def _hex_id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def _route_of(request: Request) -> str:
    """Counter key: the method and the spec's path template, so tests count pages by route."""
    path = request.path.removeprefix(API_PREFIX)
    path = re.sub(r"^/zones/[^/]+", "/zones/{zone_id}", path)
    path = re.sub(
        r"/dns_records/(?!batch$|export$|import$|scan$)[^/]+$", "/dns_records/{dns_record_id}", path
    )
    return f"{request.method} {path}"


class CloudflareEmulator(ServedEmulator):
    """One zone's DNS records behind Cloudflare's v4 API, on an `EmulatorServer`."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        zone_name: str,
        faults: Faults | None = None,
        api_token: str | None = None,
        clock: Callable[[], datetime] | None = None,
        port: int = 0,
        token: TokenPolicy | None = None,
        rate_limit: int = RATE_LIMIT,
        rate_window: float = RATE_WINDOW,
    ) -> None:
        self.zone_name = zone_name.lower().rstrip(".")
        # what the token may do and the zone's edge certificates (tests change them)
        self.token = token or TokenPolicy()
        self.state_path = Path(state_dir) / "cloudflare.json"
        self._api_token = api_token  # when set, only this bearer token is accepted
        self._clock = clock
        self._lock = threading.RLock()
        self._lose_responses: dict[str, int] = {}
        # Recorded calls (method, path, query, body, auth scheme), for contract tests.
        self.calls: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._state = self._load()
        self.limiter = FixedWindowLimiter(rate_limit, rate_window, self._seconds)
        self.refused = 0  # 429s answered for an exceeded window (not injected faults)
        self.server = EmulatorServer(
            "cloudflare",
            self.handle,
            faults=faults,
            error_body=envelope_error,
            route_of=_route_of,
            port=port,
        )

    # --- lifecycle ------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The base URL the SDK is given (`base_url=`)."""
        return self.server.url + API_PREFIX

    @property
    def zone_id(self) -> str:
        return str(self._state["zone"]["id"])

    def reset(self) -> None:
        """An empty zone, no faults, zeroed counters: one running emulator, many tests."""
        with self._lock:
            self._state = {"zone": self._state["zone"], "records": {}, "sequence": 0}
            self._lose_responses.clear()
            self.calls.clear()
            self._save()
        self.server.set_faults(Faults())
        self.server.requests.clear()
        self.server.faults_injected.clear()
        self.limiter = FixedWindowLimiter(self.limiter.limit, self.limiter.window, self._seconds)
        self.refused = 0

    def lose_responses(self, route: str, count: int = 1) -> None:
        """Apply the next `count` requests on `route` (e.g. "POST /zones/{zone_id}/dns_records")
        but drop their answers, as a connection lost after the server committed."""
        with self._lock:
            self._lose_responses[route] = self._lose_responses.get(route, 0) + count

    # --- state --------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if self.state_path.exists():
            state: dict[str, Any] = json.loads(self.state_path.read_text())
            if state["zone"]["name"] == self.zone_name:
                return state
            log.warning("cloudflare emulator: state for zone %s replaced", state["zone"]["name"])
        zone = {
            "id": _hex_id("zone", self.zone_name),
            "name": self.zone_name,
            "status": "active",
            "paused": False,
            "type": "full",
            "development_mode": 0,
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            "original_name_servers": [],
            "original_registrar": None,
            "original_dnshost": None,
            "created_on": _EPOCH.isoformat().replace("+00:00", "Z"),
            "modified_on": _EPOCH.isoformat().replace("+00:00", "Z"),
            "activated_on": _EPOCH.isoformat().replace("+00:00", "Z"),
            "account": {"id": _hex_id("account", self.zone_name), "name": "democtl local"},
            "meta": {"step": 4, "cdn_only": False, "dns_only": False, "foundation_dns": False},
            "owner": {"id": _hex_id("user", self.zone_name), "name": "democtl", "type": "user"},
            "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
        }
        return {"zone": zone, "records": {}, "sequence": 0}

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._state, sort_keys=True))
        os.replace(tmp, self.state_path)

    def _now(self, state: dict[str, Any]) -> str:
        # A logical clock by default: deterministic timestamps, one second per write.
        moment = self._clock() if self._clock else _EPOCH + timedelta(seconds=state["sequence"])
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def inspect(self) -> dict[str, Any]:
        """The zone and its records, sorted by name and type (for `democtl local inspect`)."""
        with self._lock:
            records = sorted(
                (_public(r) for r in self._state["records"].values()),
                key=lambda r: (r["name"], r["type"], r["id"]),
            )
            return {
                "zone": {"id": self.zone_id, "name": self.zone_name},
                "records": copy.deepcopy(records),
            }

    def seed_record(self, **fields: Any) -> dict[str, Any]:
        """Create a record directly (foreign records in tests, fixtures), with the API's rules."""
        with self._lock:
            record = self._create(self._state, fields)
            self._save()
            return copy.deepcopy(record)

    # --- HTTP ---------------------------------------------------------------------------

    def _seconds(self) -> float:
        return self._clock().timestamp() if self._clock is not None else time.time()

    def handle(self, request: Request) -> Response:
        # One window per user (the token stands for its user here), over every call.
        verdict = self.limiter.hit(request.headers.get("authorization", "anonymous"))
        response = self._answer(request) if verdict.allowed else self._refuse(verdict.reset)
        response.headers["Ratelimit"] = f'"default";r={verdict.remaining};t={verdict.reset}'
        response.headers["Ratelimit-Policy"] = (
            f'"default";q={verdict.limit};w={math.ceil(self.limiter.window)}'
        )
        return response

    def _refuse(self, reset: int) -> Response:
        self.refused += 1
        body = envelope_error(
            429, "Rate limited. Please wait and consider throttling your request speed"
        )
        return Response(429, body, {"Retry-After": str(reset)})

    def _answer(self, request: Request) -> Response:
        route = _route_of(request)
        self.calls.append(
            {
                "method": request.method,
                "path": request.path,
                "route": route,
                "query": {k: v[0] if len(v) == 1 else v for k, v in request.query.items()},
                "body": _json_or_none(request.body),
                "auth": _auth_scheme(request.headers),
            }
        )
        try:
            self._authenticate(request.headers)
            with self._lock:
                response = self._dispatch(route, request)
                lost = self._lose_responses.get(route, 0)
                if lost:
                    self._lose_responses[route] = lost - 1
                    response.drop = True
            return response
        except ApiError as exc:
            return Response(exc.status, envelope_error(exc.status, exc.message, exc.code))

    def _authenticate(self, headers: dict[str, str]) -> None:
        scheme = _auth_scheme(headers)
        if scheme is None:
            raise ApiError(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
        if self._api_token is not None and (
            scheme != "bearer" or headers.get("authorization") != f"Bearer {self._api_token}"
        ):
            # A global key from the environment replacing the token lands here.
            raise ApiError(403, 9109, "Invalid access token")

    def _dispatch(self, route: str, request: Request) -> Response:
        path = request.path
        if not path.startswith(API_PREFIX + "/"):
            raise ApiError(404, NO_ROUTE, "No route for the URI")
        if route == "GET /user/tokens/verify":
            return _ok(self.token.verify())
        if route == "GET /zones":
            self._require(ZONE_READ, listing=True)
            return self._list_zones(request)
        zone_path = re.fullmatch(API_PREFIX + r"/zones/([^/]+)(/ssl/certificate_packs)?", path)
        if zone_path is not None and request.method == "GET":
            self._zone_of(zone_path.group(1))
            if zone_path.group(2) is None:
                self._require(ZONE_READ)
                return _ok(copy.deepcopy(self._state["zone"]))
            # developers.cloudflare.com/api/resources/ssl/subresources/certificate_packs/
            # methods/list/: active packs only, unless status=all
            self._require(SSL_READ)
            page, per_page = _pagination(request, default=20, bounds=(5, 50))
            packs = self.token.packs(self.zone_name, all_statuses=request.arg("status") == "all")
            return self._page(packs, page, per_page)
        match = re.fullmatch(API_PREFIX + r"/zones/([^/]+)/dns_records(?:/([^/]+))?", path)
        if match is None:
            raise ApiError(404, NO_ROUTE, "No route for the URI")
        self._zone_of(match.group(1))
        self._require(DNS_READ if request.method == "GET" else DNS_EDIT)
        record_id = match.group(2)
        if record_id is None:
            if request.method == "GET":
                return self._list_records(request)
            if request.method == "POST":
                return self._write(lambda state: self._create(state, _object_body(request)))
        elif record_id == "batch" and request.method == "POST":
            return self._write(lambda state: self._batch(state, _object_body(request)), atomic=True)
        elif request.method == "GET":
            return _ok(copy.deepcopy(self._get(self._state, record_id)))
        elif request.method == "PATCH":
            return self._write(
                lambda state: self._update(state, record_id, _object_body(request), True)
            )
        elif request.method == "PUT":
            return self._write(
                lambda state: self._update(state, record_id, _object_body(request), False)
            )
        elif request.method == "DELETE":
            return self._write(lambda state: {"id": self._delete(state, record_id)["id"]})
        raise ApiError(405, NO_ROUTE, "Method not allowed for this URI")

    def _zone_of(self, zone_id: str) -> None:
        if zone_id != self.zone_id:
            raise ApiError(
                404,
                7003,
                "Could not route to /zones/..., perhaps your object identifier is invalid?",
            )

    def _require(self, permission: str, *, listing: bool = False) -> None:
        """Refuse as the API does a token without the permission (a zone listing only
        leaves out the zones the token may not read)."""
        refusal = self.token.refusal(permission)
        if refusal is None or (listing and refusal[0] == 403):
            return
        raise ApiError(*refusal)

    def _write(self, change: Callable[[dict[str, Any]], Any], atomic: bool = False) -> Response:
        # Single changes validate before they mutate; a batch is all or nothing, so it
        # works on a copy kept only if every step succeeded.
        state = copy.deepcopy(self._state) if atomic else self._state
        result = change(state)
        self._state = state
        self._save()
        return _ok(copy.deepcopy(result))

    # --- zones --------------------------------------------------------------------------

    def _list_zones(self, request: Request) -> Response:
        page, per_page = _pagination(request, default=20, bounds=ZONES_PER_PAGE)
        zones = [self._state["zone"]] if self.token.allows(ZONE_READ) else []
        wanted = request.arg("name")
        if wanted is not None:
            op, _, value = wanted.partition(":") if ":" in wanted else ("equal", "", wanted)
            tests: dict[str, Callable[[str], bool]] = {
                "equal": lambda n: n == value.lower(),
                "not_equal": lambda n: n != value.lower(),
                "starts_with": lambda n: n.startswith(value.lower()),
                "ends_with": lambda n: n.endswith(value.lower()),
                "contains": lambda n: value.lower() in n,
            }
            if op not in tests:
                raise ApiError(400, 1001, f"Invalid name filter operator {op!r}")
            zones = [z for z in zones if tests[op](z["name"])]
        return self._page(zones, page, per_page)

    # --- records: reads ---------------------------------------------------------------

    def _list_records(self, request: Request) -> Response:
        page, per_page = _pagination(request, default=100, bounds=(1, PER_PAGE_MAX))
        predicates = _record_filters(request)
        if request.arg("match", "all") not in {"all", "any"}:
            raise ApiError(400, INVALID_REQUEST, "match must be 'all' or 'any'")
        combine = any if request.arg("match") == "any" else all
        order = request.arg("order", "type") or "type"
        if order not in {"type", "name", "content", "ttl", "proxied"}:
            raise ApiError(400, INVALID_REQUEST, f"Invalid order {order!r}")
        records = [
            r
            for r in self._state["records"].values()
            if not predicates or combine(p(r) for p in predicates)
        ]
        records.sort(key=lambda r: (r[order], r["name"], r["type"], r["sequence"]))
        if request.arg("direction") == "desc":
            records.reverse()
        return self._page([_public(r) for r in records], page, per_page)

    def _page(self, items: list[dict[str, Any]], page: int, per_page: int) -> Response:
        # Past the last page the answer is an empty page, as upstream: the SDK stops on it.
        chunk = items[(page - 1) * per_page : page * per_page]
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": max(1, math.ceil(len(items) / per_page)),
        }
        return _ok(copy.deepcopy(chunk), info)

    def _get(self, state: dict[str, Any], record_id: str) -> dict[str, Any]:
        record = state["records"].get(record_id)
        if record is None:
            raise ApiError(404, NOT_FOUND, "Record does not exist.")
        return _public(record)

    # --- records: writes --------------------------------------------------------------

    def _create(self, state: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        fields = self._validated(body)
        self._check_conflicts(state, fields, exclude=None)
        state["sequence"] += 1
        now = self._now(state)
        record_id = _hex_id("record", self.zone_name, str(state["sequence"]))
        record = {
            "id": record_id,
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            **fields,
            "proxiable": fields["type"] in PROXIABLE_TYPES,
            "settings": {},
            "meta": {},
            "tags": list(fields.get("tags", [])),
            "created_on": now,
            "modified_on": now,
            "sequence": state["sequence"],
        }
        if record.get("comment"):
            record["comment_modified_on"] = now
        state["records"][record_id] = record
        return _public(record)

    def _update(
        self, state: dict[str, Any], record_id: str, body: dict[str, Any], patch: bool
    ) -> dict[str, Any]:
        current = state["records"].get(record_id)
        if current is None:
            raise ApiError(404, NOT_FOUND, "Record does not exist.")
        body = {k: v for k, v in body.items() if k != "id"}
        if patch:
            merged = {k: current[k] for k in ("name", "type", "content", "proxied", "ttl")}
            merged["comment"] = current.get("comment")
            merged["tags"] = current.get("tags", [])
            merged.update(body)
            if "proxied" not in body and "type" in body and body["type"] not in PROXIABLE_TYPES:
                merged["proxied"] = False
        else:
            merged = body
        fields = self._validated(merged)
        self._check_conflicts(state, fields, exclude=record_id)
        state["sequence"] += 1
        now = self._now(state)
        if fields.get("comment") != current.get("comment"):
            current["comment_modified_on"] = now
        if not patch:
            current.pop("comment", None)
        current.update(fields)
        current["proxiable"] = current["type"] in PROXIABLE_TYPES
        current["modified_on"] = now
        return _public(current)

    def _delete(self, state: dict[str, Any], record_id: str) -> dict[str, Any]:
        record = state["records"].pop(record_id, None)
        if record is None:
            raise ApiError(404, NOT_FOUND, "Record does not exist.")
        return _public(record)

    def _batch(self, state: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"deletes", "patches", "puts", "posts"}
        if unknown:
            raise ApiError(400, INVALID_REQUEST, f"Unknown batch keys: {sorted(unknown)}")
        result: dict[str, list[dict[str, Any]]] = {}
        for key in ("deletes", "patches", "puts", "posts"):  # Cloudflare's documented order
            items = body.get(key) or []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ApiError(400, INVALID_REQUEST, f"{key} must be a list of objects")
            done = []
            for item in items:
                if key != "posts" and not isinstance(item.get("id"), str):
                    raise ApiError(400, INVALID_REQUEST, f"{key}: every item needs an id")
                if key == "deletes":
                    done.append(self._delete(state, item["id"]))
                elif key == "patches":
                    done.append(self._update(state, item["id"], item, True))
                elif key == "puts":
                    done.append(self._update(state, item["id"], item, False))
                else:
                    done.append(self._create(state, item))
            result[key] = done
        return result

    def _validated(self, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"name", "type", "content", "proxied", "ttl", "comment", "tags", "settings"}
        allowed |= {"data", "priority", "id"}
        extra = set(body) - allowed
        if extra:
            raise ApiError(400, INVALID_REQUEST, f"Unknown fields: {sorted(extra)}")
        rtype = body.get("type")
        if rtype not in RECORD_TYPES:
            raise ApiError(400, INVALID_TYPE, f"Invalid DNS record type {rtype!r}")
        name = self._fqdn(body.get("name"))
        content = body.get("content")
        if not isinstance(content, str) or not content:
            raise ApiError(400, INVALID_CONTENT, f"Content for {rtype} record is invalid.")
        content = self._content(rtype, content, name)
        proxied = body.get("proxied", False)
        if not isinstance(proxied, bool):
            raise ApiError(400, INVALID_PROXIED, "proxied must be a boolean")
        if proxied and rtype not in PROXIABLE_TYPES:
            raise ApiError(400, INVALID_PROXIED, f"{rtype} records cannot be proxied.")
        ttl = body.get("ttl", TTL_AUTO)
        if not isinstance(ttl, int | float) or isinstance(ttl, bool):
            raise ApiError(400, INVALID_TTL, "Invalid TTL.")
        if ttl != TTL_AUTO and not 60 <= ttl <= 86400:
            raise ApiError(
                400,
                INVALID_TTL,
                "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic",
            )
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise ApiError(400, INVALID_REQUEST, "comment must be a string")
        if comment is not None and len(comment) > COMMENT_MAX:
            raise ApiError(
                400,
                COMMENT_TOO_LONG,
                f"DNS record comment is too long: {len(comment)} characters, limit {COMMENT_MAX}",
            )
        tags = body.get("tags") or []
        if tags:
            raise ApiError(400, 9300, "DNS record tags are not available on the Free plan.")
        fields: dict[str, Any] = {
            "name": name,
            "type": rtype,
            "content": content,
            "proxied": proxied,
            # Proxied records always answer with TTL 1 (automatic), whatever was sent.
            "ttl": TTL_AUTO if proxied else int(ttl),
        }
        if comment:
            fields["comment"] = comment
        return fields

    def _fqdn(self, raw: Any) -> str:
        if not isinstance(raw, str) or not raw or len(raw) > 255:
            raise ApiError(400, INVALID_NAME, "DNS name is invalid.")
        name = raw.lower().rstrip(".")
        if name == "@":
            name = self.zone_name
        elif name != self.zone_name and not name.endswith("." + self.zone_name):
            name = f"{name}.{self.zone_name}"
        labels = name.split(".")
        if not all(_LABEL.match(label) or label == "*" for label in labels):
            raise ApiError(400, INVALID_NAME, "DNS name is invalid.")
        return name

    def _content(self, rtype: str, content: str, name: str) -> str:
        try:
            if rtype == "A":
                return str(ipaddress.IPv4Address(content))
            if rtype == "AAAA":
                return str(ipaddress.IPv6Address(content))
        except ValueError:
            raise ApiError(
                400, INVALID_CONTENT, f"Content for {rtype} record must be a valid IP address."
            ) from None
        if rtype == "CNAME":
            target = content.lower().rstrip(".")
            labels = target.split(".")
            if target == name or len(labels) < 2 or not all(_LABEL.match(x) for x in labels):
                raise ApiError(400, INVALID_CONTENT, "Content for CNAME record is invalid.")
            return target
        return content

    def _check_conflicts(
        self, state: dict[str, Any], fields: dict[str, Any], exclude: str | None
    ) -> None:
        for other in state["records"].values():
            if other["id"] == exclude or other["name"] != fields["name"]:
                continue
            if other["type"] == fields["type"] and other["content"] == fields["content"]:
                raise ApiError(400, IDENTICAL_EXISTS, "An identical record already exists.")
            if fields["type"] not in ADDRESS_TYPES or other["type"] not in ADDRESS_TYPES:
                continue
            # Cloudflare's "records with the same name" rules: a CNAME cannot share its
            # name with an A, AAAA or CNAME (81053), nor an A or AAAA with a CNAME
            # (81054, as the API answers it: favonia/cloudflare-ddns issue #990).
            if fields["type"] == "CNAME":
                raise ApiError(
                    400, HOST_CONFLICT, "An A, AAAA, or CNAME record with that host already exists."
                )
            if other["type"] == "CNAME":
                raise ApiError(
                    400,
                    CNAME_CONFLICT,
                    "A CNAME record with that host already exists. "
                    f"For more details, refer to <{SAME_NAME_DOCS}>.",
                )


# --- helpers ----------------------------------------------------------------------------


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "sequence"}


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(body)
    return None


def _object_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise ApiError(400, INVALID_REQUEST, "Malformed JSON in request body") from None
    if not isinstance(body, dict):
        raise ApiError(400, INVALID_REQUEST, "Request body must be a JSON object")
    return body


def _auth_scheme(headers: dict[str, str]) -> str | None:
    if headers.get("x-auth-email") or headers.get("x-auth-key"):
        return "email-key"
    if headers.get("authorization", "").startswith("Bearer "):
        return "bearer"
    return None


def _pagination(request: Request, *, default: int, bounds: tuple[int, int]) -> tuple[int, int]:
    try:
        page = float(request.arg("page", "1") or "1")
        per_page = float(request.arg("per_page", str(default)) or default)
    except ValueError:
        raise ApiError(400, INVALID_PAGINATION, "page and per_page must be numbers") from None
    if page < 1 or page != int(page):
        raise ApiError(400, INVALID_PAGINATION, "page must be a whole number of at least 1")
    low, high = bounds
    if not low <= per_page <= high or per_page != int(per_page):
        raise ApiError(400, INVALID_PAGINATION, f"per_page must be between {low} and {high}")
    return int(page), int(per_page)


_TEXT_OPS: dict[str, Callable[[str, str], bool]] = {
    "exact": lambda value, wanted: value == wanted,
    "contains": lambda value, wanted: wanted in value,
    "startswith": lambda value, wanted: value.startswith(wanted),
    "endswith": lambda value, wanted: value.endswith(wanted),
}


def _equals(field: str, wanted: object) -> Callable[[dict[str, Any]], bool]:
    return lambda r: bool(r[field] == wanted)


def _record_filters(request: Request) -> list[Callable[[dict[str, Any]], bool]]:
    """Name, content and comment filters; all case-insensitive, as upstream documents."""
    predicates: list[Callable[[dict[str, Any]], bool]] = []

    def text(field: str, op: str, wanted: str) -> Callable[[dict[str, Any]], bool]:
        test = _TEXT_OPS[op]
        wanted = wanted.lower()
        if field == "name":
            wanted = wanted.rstrip(".")
        return lambda r: test(str(r.get(field) or "").lower(), wanted)

    for key, values in request.query.items():
        value = values[0]
        field, _, op = key.partition(".")
        if field in {"name", "content", "comment"}:
            op = op or "exact"
            if op in _TEXT_OPS:
                predicates.append(text(field, op, value))
            elif field == "comment" and op == "present":
                predicates.append(lambda r: bool(r.get("comment")))
            elif field == "comment" and op == "absent":
                predicates.append(lambda r: not r.get("comment"))
            else:
                raise ApiError(400, INVALID_REQUEST, f"Unsupported filter {key!r}")
        elif key == "type":
            if value not in RECORD_TYPES:
                raise ApiError(400, INVALID_TYPE, f"Invalid DNS record type {value!r}")
            predicates.append(_equals("type", value))
        elif key == "proxied":
            predicates.append(_equals("proxied", value.lower() == "true"))
        elif key.startswith("tag"):
            raise ApiError(400, 9300, "DNS record tags are not available on the Free plan.")
    return predicates
