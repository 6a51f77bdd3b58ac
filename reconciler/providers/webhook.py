"""The notices webhook: one POST of Slack-compatible JSON per message.

Owns `SlackWebhook`, the `Notifier` adapter. Slack's incoming webhooks take
`{"text": ..., "blocks": [...]}` as application/json and answer 200 with the body
`ok`; a refused message is a 4xx with a short code as its body (`invalid_payload`,
`no_service`, `channel_not_found`, ...), and an outage a 5xx
(https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks, "Handling
errors"). Other chat tools that accept Slack's format (Mattermost, Rocket.Chat) answer
2xx the same way. The timeout is short and nothing is retried here: a notice that did
not go is tried again by the next cycle, which must never wait on a chat service.

The URL is a secret (it alone authorises posting): it appears in no message, log line
or error; errors name the host only. May import httpx, `providers.base` and
`providers.http`.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx

from reconciler.providers.base import Message, Notifier, ProviderError
from reconciler.providers.http import Network, http_client

DEFAULT_TIMEOUT = 5.0
# httpx logs every request's full URL (at INFO, "HTTP Request: POST <url> ..."): with -v
# that line would carry the webhook's secret path
_HTTPX_LOGGER = logging.getLogger("httpx")


class _MaskUrl(logging.Filter):
    def __init__(self, url: str, shown: str) -> None:
        super().__init__()
        self.url = url
        self.shown = shown

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.url in text:
            record.msg = text.replace(self.url, self.shown)
            record.args = ()
        return True


class SlackWebhook:
    def __init__(
        self, url: str, *, timeout: float = DEFAULT_TIMEOUT, network: Network | None = None
    ) -> None:
        self._url = url
        self._host = urlsplit(url).hostname or "the webhook"
        self._client = http_client(timeout=timeout, network=network)
        self._mask = _MaskUrl(url, f"<webhook at {self._host}>")
        _HTTPX_LOGGER.addFilter(self._mask)

    def __repr__(self) -> str:
        return f"SlackWebhook(host={self._host!r})"

    def close(self) -> None:
        self._client.close()
        _HTTPX_LOGGER.removeFilter(self._mask)

    def post(self, message: Message) -> None:
        try:
            response = self._client.post(self._url, json=message.payload())
        except httpx.HTTPError as exc:
            # the exception's text may carry the URL: only its kind is kept
            raise ProviderError(
                "webhook",
                "post",
                f"no answer from {self._host} ({type(exc).__name__})",
                retryable=True,
            ) from None
        if response.is_success:
            return
        code = response.text.replace(self._url, "<webhook>").strip()[:80]
        raise ProviderError(
            "webhook",
            "post",
            f"{self._host} answered {response.status_code}" + (f": {code}" if code else ""),
            retryable=response.status_code >= 500 or response.status_code == 429,
            status_code=response.status_code,
        )


def _check(adapter: SlackWebhook) -> Notifier:
    return adapter  # mypy: SlackWebhook satisfies the Protocol
