"""The logging net under the adapters: credentials from the environment never reach a log line."""

from __future__ import annotations

import io
import json
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


# --- --log-format json ------------------------------------------------------------------

# JSON escapes a quote and a backslash: a token holding them must be masked all the same
AWKWARD = 'gh-tok"en\\0123456789'


@pytest.fixture(params=["text", "json"])
def any_format(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Configured]:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_TOKEN", AWKWARD)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logsetup.configure(verbosity=2, fmt=request.param)
    out = Configured()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out.stream)
    yield out
    root.handlers[:], root.level = saved


def test_a_token_is_masked_on_every_log_path_in_both_formats(any_format: Configured) -> None:
    log = any_format.log
    for secret in (TOKEN, AWKWARD):
        log.info(f"demo-a: in the message {secret}")
        log.info("demo-a: in an argument %s", secret)
        log.info("%s: in a field", "demo-a", extra={"action": secret, "outcome": secret})
        log.warning("demo-a: with a stack", stack_info=True, extra={"demo": secret})
        try:
            raise RuntimeError(f"Authorization: Bearer {secret}")
        except RuntimeError:
            log.exception("demo-a: in a traceback")
    err = any_format.stream.getvalue()
    assert "RuntimeError" in err and "in a traceback" in err
    for secret in (TOKEN, AWKWARD, json.dumps(AWKWARD)[1:-1]):  # raw and JSON-escaped
        assert secret not in err
    assert "0123456789" not in err


def test_json_lines_carry_time_level_demo_action_outcome_duration_and_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logsetup.configure(verbosity=1, fmt="json")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    log = logging.getLogger("reconciler.apply")
    try:
        with logsetup.cycle_scope("20261125T120000Z-1"):
            log.info(
                "%s: %s",
                "demo-acme01",
                "ensure-project",
                extra={"action": "ensure-project", "outcome": "ok", "duration": 1.25},
            )
        log.warning("no demo here")
    finally:
        root.handlers[:], root.level = saved
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first == {
        "time": first["time"],
        "level": "info",
        "logger": "reconciler.apply",
        "message": "demo-acme01: ensure-project",
        "demo": "demo-acme01",
        "action": "ensure-project",
        "outcome": "ok",
        "duration": 1.25,
        "cycle": "20261125T120000Z-1",
    }
    assert first["time"].endswith("+00:00")
    assert second["level"] == "warning" and "demo" not in second and "cycle" not in second


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format 'xml'"):
        logsetup.configure(0, "xml")
