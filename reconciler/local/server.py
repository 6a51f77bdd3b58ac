"""The HTTP plumbing every local emulator shares: a loopback server, faults, counters.

An emulator is a function from `Request` to `Response` (its API) plus this server.
The server injects the faults the reconciler must survive (latency, 429 with
Retry-After, 5xx, timeouts, dropped connections) at configured rates from a
seeded random source, so a test that asks for faults gets the same ones every run,
and counts requests per route for tests and benchmarks. `ServedEmulator` is the
lifecycle every emulator delegates to its server. Imports the standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Faults:
    """Rates are probabilities per request (0..1); `only` limits faults to matching paths."""

    latency: float = 0.0  # seconds added to every request
    rate_limit: float = 0.0  # answer 429 with Retry-After
    retry_after: int = 1
    server_error: float = 0.0  # answer 503
    timeout: float = 0.0  # hold the request for `timeout_seconds`, then drop it
    timeout_seconds: float = 2.0
    drop: float = 0.0  # close the connection without an answer
    only: str | None = None  # substring of the path the faults apply to
    seed: int = 0


def parse_faults(text: str) -> Faults:
    """Faults from `name=value,...` (the field names of `Faults`), as DEMOCTL_LOCAL_FAULTS holds.

    For example `rate_limit=0.1,server_error=0.05,drop=0.02,latency=0.05,seed=7`;
    `only=/dns_records` limits them to one API. Raises ValueError naming the bad part.
    """
    fields = {f.name: f.type for f in dataclasses.fields(Faults)}
    values: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = (x.strip() for x in part.partition("="))
        if not sep or name not in fields:
            raise ValueError(f"{part!r}: expected name=value with name one of {', '.join(fields)}")
        if name == "only":
            values[name] = raw
            continue
        try:
            number = int(raw) if name in ("seed", "retry_after") else float(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a number") from None
        if not math.isfinite(number) or number < 0 or (name in _RATES and number > 1):
            raise ValueError(f"{name}={raw!r} is out of range ({_RANGE.get(name, '>= 0')})")
        values[name] = number
    return Faults(**values)


_RATES = ("rate_limit", "server_error", "timeout", "drop")
_RANGE = dict.fromkeys(_RATES, "a rate per request, 0..1")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # bytes are sent as they are; anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    # The emulator applied the request but the answer is lost (connection closed
    # unanswered): how a client meets "my create went through, I never heard back".
    drop: bool = False

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


Handler = Callable[[Request], Response]
ErrorBody = Callable[[int, str], Any]


def _default_error(status: int, message: str) -> Any:
    return {"message": message}


class EmulatorServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving one emulator's handler."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        faults: Faults | None = None,
        error_body: ErrorBody = _default_error,
        route_of: Callable[[Request], str] | None = None,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls` serves HTTPS with that (server-side) context, for tests of TLS clients."""
        self.name = name
        self.handler = handler
        self.faults = faults or Faults()
        self.error_body = error_body
        self.route_of = route_of or (lambda r: f"{r.method} {r.path}")
        self.requests: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self._random = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._make_handler())
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def start(self) -> str:
        self._thread = threading.Thread(
            # a short poll interval: stop() waits for it, once per test that owns a server
            target=lambda: self._server.serve_forever(poll_interval=0.05),
            name=f"{self.name}-emulator",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._random = random.Random(faults.seed)

    def _draw_fault(self, path: str) -> str | None:
        with self._lock:
            faults = self.faults
            if faults.only is not None and faults.only not in path:
                return None
            roll = self._random.random()
        for kind, rate in (
            ("drop", faults.drop),
            ("timeout", faults.timeout),
            ("rate_limit", faults.rate_limit),
            ("server_error", faults.server_error),
        ):
            if roll < rate:
                return kind
            roll -= rate
        return None

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; with Nagle on, the body waits for
            # the client's delayed ACK (~40 ms a request on loopback).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return  # tests read counters, not access logs

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                route = emulator.route_of(request)
                with emulator._lock:
                    emulator.requests[route] += 1
                if emulator.faults.latency:
                    time.sleep(emulator.faults.latency)
                fault = emulator._draw_fault(split.path)
                if fault is not None:
                    with emulator._lock:
                        emulator.faults_injected[fault] += 1
                if fault in {"drop", "timeout"}:
                    if fault == "timeout":
                        time.sleep(emulator.faults.timeout_seconds)
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "rate_limit":
                    response = Response(
                        429,
                        emulator.error_body(429, "Too many requests"),
                        {"Retry-After": str(emulator.faults.retry_after)},
                    )
                elif fault == "server_error":
                    response = Response(503, emulator.error_body(503, "Service unavailable"))
                else:
                    try:
                        response = emulator.handler(request)
                    except Exception as exc:  # an emulator bug must not hang the client
                        response = Response(500, emulator.error_body(500, f"emulator error: {exc}"))
                if response.drop:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = response.encoded()
                self.send_response(response.status)
                headers = {"Content-Type": "application/json", **response.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        return _Handler


class ServedEmulator:
    """What an emulator's lifecycle is: its `server`'s. `with SomeEmulator(...) as emulator:`.

    Subclasses set `self.server` in `__init__`; the API they serve stays theirs.
    """

    server: EmulatorServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> Counter[str]:
        return self.server.requests

    def start(self) -> str:
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(self, faults: Faults) -> None:
        self.server.set_faults(faults)
