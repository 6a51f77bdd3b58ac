"""Logging for the command line: text for people or JSON lines for machines, secrets masked.

Adapters never log secrets, and this is the net under them: every record is
checked for the credential values democtl reads from the environment, and any
found are replaced by `***` before the line is written. `--log-format json`
writes one JSON object per line (time, level, logger, message, demo, action,
outcome, duration, cycle); the cycle id comes from `cycle_scope`, a context
variable the loop sets. Imports the standard library only.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

SECRET_VARIABLES = (
    "SUPABASE_ACCESS_TOKEN",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_API_KEY",
    "GITHUB_TOKEN",
)


class RedactingFormatter(logging.Formatter):
    """Masks the secrets in the whole formatted line: message, arguments and traceback.

    A filter that rewrote only the message would let a secret through in an
    exception's traceback (`log.exception` of an error whose text quotes a token).
    """

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        # short values would mask ordinary words; real tokens are long
        self.secrets = sorted((s for s in secrets if len(s) >= 8), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


FORMATS = ("text", "json")
# the structured fields a record may carry (`extra=`), in the order a line shows them
FIELDS = ("demo", "action", "outcome", "duration")
_CYCLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("democtl_cycle", default=None)
# the convention every democtl line follows: "%s: ..." with the demo id first
_DEMO_ID = re.compile(r"^demo-[a-z0-9-]+$")


@contextmanager
def cycle_scope(cycle_id: str) -> Iterator[None]:
    """Every record logged inside (in this thread, and in copies of its context) names the cycle."""
    token = _CYCLE.set(cycle_id)
    try:
        yield
    finally:
        _CYCLE.reset(token)


def current_cycle() -> str | None:
    return _CYCLE.get()


class JsonFormatter(RedactingFormatter):
    """One JSON object per line; every value masked before it is written, and the line again.

    Masking each value first matters: JSON escapes a secret holding a quote or a
    backslash, and the escaped form would no longer match in the serialized line.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__("%(message)s", secrets)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        demo = getattr(record, "demo", None) or _demo_of(record)
        for name, value in (("demo", demo), *((f, getattr(record, f, None)) for f in FIELDS[1:])):
            if value is not None:
                line[name] = value if isinstance(value, int | float) else str(value)
        cycle = getattr(record, "cycle", None) or current_cycle()
        if cycle:
            line["cycle"] = cycle
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        masked = {k: self.redact(v) if isinstance(v, str) else v for k, v in line.items()}
        return self.redact(json.dumps(masked, ensure_ascii=False))


def _demo_of(record: logging.LogRecord) -> str | None:
    """The demo id a `"%s: ..."` line starts with, as every democtl line about a demo does."""
    if not isinstance(record.msg, str) or not record.msg.startswith("%s: "):
        return None
    args = record.args if isinstance(record.args, tuple) else ()
    first = args[0] if args else None
    return first if isinstance(first, str) and _DEMO_ID.match(first) else None


def configure(verbosity: int = 0, fmt: str = "text") -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    secrets = [os.environ.get(v, "") for v in SECRET_VARIABLES]
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(secrets))
    elif fmt == "text":
        handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s", secrets))
    else:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
