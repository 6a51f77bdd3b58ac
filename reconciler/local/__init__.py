"""The emulators of `--local` and the stack that starts them; imported by wiring and tests."""
