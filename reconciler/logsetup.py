"""Logging for the command line: one format, one level, secrets masked.

Adapters never log secrets, and this is the net under them: every record is
checked for the credential values democtl reads from the environment, and any
found are replaced by `***` before the line is written. Imports the standard
library only.
"""

from __future__ import annotations

import logging
import os
import sys

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
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def configure(verbosity: int = 0) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter(
            "%(levelname)s %(name)s: %(message)s",
            [os.environ.get(v, "") for v in SECRET_VARIABLES],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
