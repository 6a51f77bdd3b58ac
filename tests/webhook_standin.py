"""A loopback stand-in of a Slack incoming webhook: a real HTTP server in the test.

It answers as Slack documents (https://docs.slack.dev/messaging/sending-messages-using-
incoming-webhooks, "Handling errors"): 200 with the body `ok` for a message it takes,
400 `invalid_payload` for a body that is not JSON with a `text`, and what a test tells
it (`fail_with`: a status and body for the next POSTs; `hold`: never answer until
released, as a service that stalls).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_PATH = "/services/T0DEMOCTL/B0NOTICES/s3cr3tW3bh00kT0k3n"


class WebhookStandIn:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.posts = 0
        self.received = 0
        self.fail_with: tuple[int, str] | None = None
        self.hold = threading.Event()
        self.hold.set()  # set: answer at once
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.received += 1
                owner.hold.wait()
                owner.posts += 1
                if self.path != SECRET_PATH:
                    return self._answer(404, "no_service")
                if owner.fail_with is not None:
                    return self._answer(*owner.fail_with)
                try:
                    message = json.loads(body)
                except ValueError:
                    return self._answer(400, "invalid_payload")
                is_json = self.headers.get("Content-Type", "").startswith("application/json")
                if not is_json or not isinstance(message.get("text"), str):
                    return self._answer(400, "invalid_payload")
                owner.messages.append(message)
                self._answer(200, "ok")

            def _answer(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{SECRET_PATH}"

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    def __enter__(self) -> WebhookStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()
