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
from typing import Any

from reconciler.local.server import EmulatorServer, Request, Response

SECRET_PATH = "/services/T0DEMOCTL/B0NOTICES/s3cr3tW3bh00kT0k3n"


def _answer(code: int, text: str) -> Response:
    return Response(code, text.encode(), {"Content-Type": "text/html"})


class WebhookStandIn:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.posts = 0
        self.received = 0
        self.fail_with: tuple[int, str] | None = None
        self.hold = threading.Event()
        self.hold.set()  # set: answer at once
        self._server = EmulatorServer("slack-webhook", self._handle)

    def _handle(self, request: Request) -> Response:
        if request.method != "POST":
            return _answer(405, "invalid_method")
        self.received += 1
        self.hold.wait()
        self.posts += 1
        if request.path != SECRET_PATH:
            return _answer(404, "no_service")
        if self.fail_with is not None:
            return _answer(*self.fail_with)
        try:
            message = json.loads(request.body)
        except ValueError:
            return _answer(400, "invalid_payload")
        is_json = request.headers.get("content-type", "").startswith("application/json")
        if not is_json or not isinstance(message.get("text"), str):
            return _answer(400, "invalid_payload")
        self.messages.append(message)
        return _answer(200, "ok")

    @property
    def url(self) -> str:
        return f"{self._server.url}{SECRET_PATH}"

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    def __enter__(self) -> WebhookStandIn:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.set()
        self._server.stop()
