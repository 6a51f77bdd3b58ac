#!/usr/bin/env bash
# The tests against the LOWEST versions pyproject.toml allows for democtl's direct runtime
# dependencies (each `>=X` becomes `==X`), so a lower bound that the code outgrew fails
# here rather than on a user's machine. Dev tools and transitive dependencies resolve as
# usual. Not part of .ci/run (a second environment and test run would take CI past ~10
# minutes); run it when a bound in [project].dependencies changes:
#   bash .ci/lowest-deps.sh            # whole suite
#   bash .ci/lowest-deps.sh tests/x.py # or some tests
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-lowest
constraints="$venv/lowest.txt"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip

# `name[extra]>=X,<Y` -> `name==X`; a dependency without a `>=` bound is an error here.
python - "$constraints" <<'PY'
import re, sys, tomllib
lines = []
for requirement in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^]]*\])?\s*>=\s*([^,;\s]+).*", requirement)
    if match is None:
        sys.exit(f"lowest-deps: {requirement!r} has no >= lower bound")
    lines.append(f"{match.group(1)}=={match.group(3)}")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
echo "== lowest allowed direct dependencies"; cat "$constraints"

python -m pip install -q -c "$constraints" -e '.[dev]'
echo "== installed"; python -m pip freeze --exclude-editable | grep -iE "^($(sed 's/==.*//; s/[-_.]/[-_.]/g' "$constraints" | paste -sd'|'))==" || true

echo "== tests"
set +e
python -m pytest -n auto -q -p no:cacheprovider "$@"
code=$?
set -e
if [ "$code" = 5 ]; then echo "lowest-deps: pytest collected no tests" >&2; exit 1; fi
exit "$code"
