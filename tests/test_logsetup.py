"""The logging net under the adapters: credentials from the environment never reach a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from reconciler import logsetup

TOKEN = "cf-token-0123456789abcdef"  # made up; the test looks for it in the output


class Configured:
    def __init__(self) -> None:
        self.log = logging.getLogger("reconciler.test")
        self.stream = io.StringIO()


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Configured]:
    """`logsetup.configure` as the CLI calls it, its handler writing to a buffer."""
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logsetup.configure(verbosity=2)
    out = Configured()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out.stream)
    yield out
    root.handlers[:], root.level = saved


def test_a_token_in_the_message_or_its_arguments_is_masked(configured: Configured) -> None:
    configured.log.info("demo-a: calling with %s", TOKEN)
    configured.log.warning(f"demo-a: header Bearer {TOKEN}")
    err = configured.stream.getvalue()
    assert TOKEN not in err
    assert err.count("***") == 2 and "demo-a: calling with ***" in err


def test_a_token_in_a_traceback_is_masked(configured: Configured) -> None:
    try:
        raise RuntimeError(f"request failed: Authorization: Bearer {TOKEN}")
    except RuntimeError:
        configured.log.exception("demo-a: ensure-dns failed unexpectedly")
    err = configured.stream.getvalue()
    assert "Traceback" in err and "RuntimeError: request failed" in err
    assert TOKEN not in err
