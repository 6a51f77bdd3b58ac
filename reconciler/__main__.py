"""`python -m reconciler`: the democtl command line (imports the CLI only)."""

from reconciler.cli import main

main()
