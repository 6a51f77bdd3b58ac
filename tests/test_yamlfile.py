"""The libyaml fast path of the hardened loader gives exactly what the pure-Python path gives.

Same data, same key lines, same errors (message and line); anchors and aliases
never take the fast path.
"""

from __future__ import annotations

import pytest

from reconciler import yamlfile
from reconciler.yamlfile import YamlError, load_document
from tests.gitrepo import demo_yaml

CASES = {
    "demo": demo_yaml("demo-acme01"),
    "nested": "a:\n  b: [1, {c: 3}]\n  d:\n    - x\n    - y: true\n      z: 2026-12-01\nn: null\n",
    "quoted": "color: \"#0055ff\"\nname: 'Acme'\nnum: 0o17\nf: 1.5e3\nyes: yes\n",
    "duplicate-key": "a: 1\nb: 2\na: 3\n",
    "list-top": "- a\n- b\n",
    "scalar-top": "just text\n",
    "empty": "",
    "two-documents": "a: 1\n---\nb: 2\n",
    "bad-yaml": "a: [1, 2\nb: 3\n",
    "bad-indent": "a:\n  b: 1\n c: 2\n",
    "non-string-key": "1: one\ntrue: yes\n",
    "complex-key": "? [a, b]\n: 1\n",
    "custom-tag": "a: !!python/object:os.system echo\n",
    "anchor": "a: &x 1\nb: 2\n",
    "alias": "a: &x [1]\nb: *x\n",
    "star-in-text": "a: '5 * 3'\n",
}


def pure(text: str) -> yamlfile.Document:
    return yamlfile._document(yamlfile._NoAliasLoader(text))


def outcome(text: str, *, fast: bool) -> object:
    try:
        doc = load_document(text.encode()) if fast else pure(text)
    except YamlError as exc:
        return ("error", exc.message, exc.line)
    return ("ok", doc.data, doc.lines)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_and_pure_loading_agree(name: str) -> None:
    text = CASES[name]
    assert outcome(text, fast=True) == outcome(text, fast=False)


def test_a_plain_file_takes_the_c_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    if yamlfile._CLoader is None:
        pytest.skip("PyYAML built without libyaml")

    def refuse(_loader: object) -> None:
        raise AssertionError("the pure-Python loader was used")

    monkeypatch.setattr(yamlfile, "_document", refuse)
    assert load_document(CASES["demo"].encode()).data["metadata"]["name"] == "demo-acme01"


@pytest.mark.parametrize("name", ["anchor", "alias"])
def test_anchors_and_aliases_are_refused_on_every_path(name: str) -> None:
    with pytest.raises(YamlError, match="not allowed"):
        load_document(CASES[name].encode())


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\n"
    with pytest.raises(YamlError, match="not allowed"):
        load_document(bomb.encode())
