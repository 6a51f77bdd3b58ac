"""The emulators of `--local` and the stack that starts them; imported by wiring and tests.

This package's face holds only where the local world lives, so finding it
(every `--local` command does) loads no emulator.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = Path(".democtl") / "local"


def local_state_dir(repo: Path) -> Path:
    """Where the emulators of a state repository keep their world between commands."""
    return repo / STATE_DIR
