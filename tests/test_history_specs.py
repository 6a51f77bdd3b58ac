"""`history` reads a committed demo file's ttl and expiresAt as the hardened loader would."""

from __future__ import annotations

import pytest

from reconciler.gitstate.audit import _spec_of, _whole_spec

CASES = {
    "ttl": b"spec:\n  ttl: 2h\n",
    "expires-at-timestamp": b"spec:\n  expiresAt: 2026-12-01T18:00:00Z\n",
    "quoted": b'spec:\n  ttl: "2h"\n  expiresAt: "2026-12-01T18:00:00Z"\n',
    "integer": b"spec:\n  ttl: 12\n",
    "null": b"spec:\n  ttl: null\n",
    "explicit-tag": b"spec:\n  ttl: !!str 5\n",
    "block-scalar": b"spec:\n  ttl: |\n    12\n",
    "spec-a-list": b"spec: [1]\n",
    "no-spec": b"a: 1\n",
    "duplicate-key": b"spec:\n  ttl: 2h\n  ttl: 3h\n",
    "tabs": b"spec:\n\tttl: 2h\n",
    "alias": b"x: &t 2h\nspec:\n  ttl: *t\n",
    "not-yaml": b"spec: [\n",
    "not-utf8": b"spec:\n  ttl: \xff\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_fast_reader_agrees_with_the_hardened_loader(name: str) -> None:
    whole = _whole_spec(CASES[name])
    assert _spec_of(CASES[name]) == {k: v for k, v in whole.items() if k in ("ttl", "expiresAt")}
