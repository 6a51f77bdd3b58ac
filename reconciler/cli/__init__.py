"""The democtl command line: parse arguments, call the package, print. No logic lives here.

Built on click: it gives exit code 2 for bad usage, help text and composable
options. Every command takes `--repo`, `--local` and `--now` through
`options.common_options`. Exit codes: 0 success, 1 a check or an action
failed, 2 bad usage or settings. This face exports the group (`cli`) and the
console script (`main`); it imports `main` only.
"""

from reconciler.cli.main import cli, main

__all__ = ["cli", "main"]
