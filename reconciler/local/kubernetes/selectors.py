"""Kubernetes label selectors, as the API server parses and matches them.

Owns the selector grammar (`k=v`, `k==v`, `k!=v`, `k in (..)`, `k notin (..)`, `k`, `!k`)
and matching a selector against an object's labels; `Requirement.narrows` tells the
store which requirements its label index can answer. Imports the standard library only.
See https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_SET_REQ = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
_EQ_REQ = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_KEY = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def _split_requirements(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


@dataclass(frozen=True)
class Requirement:
    """One requirement of a selector: `op` is `=`, `!=`, `in`, `notin`, `exists` or `!`."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op in {"in", "notin"}:
            present = self.key in labels and labels[self.key] in self.values
            return present == (self.op == "in")
        if self.op in {"=", "!="}:
            equal = labels.get(self.key) == next(iter(self.values))
            return equal == (self.op == "=")
        return (self.key in labels) == (self.op == "exists")

    def narrows(self) -> bool:
        """True if only objects carrying `key` can match (a label index can answer it)."""
        return self.op in {"=", "in", "exists"}


def parse_selector(selector: str | None) -> list[Requirement]:
    """The requirements of a label selector; raises ValueError where the API server would."""
    requirements: list[Requirement] = []
    for requirement in _split_requirements(selector or ""):
        if match := _SET_REQ.match(requirement):
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append(Requirement(match["key"], match["op"], values))
        elif match := _EQ_REQ.match(requirement):
            op = "!=" if match["op"] == "!=" else "="
            requirements.append(Requirement(match["key"], op, frozenset([match["value"]])))
        elif match := _KEY.match(requirement):
            requirements.append(Requirement(match["key"], "!" if match["neg"] else "exists"))
        else:
            raise ValueError(f"unable to parse requirement: {requirement!r}")
    return requirements


def selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: `k=v`, `k!=v`, `k in (a,b)`, `k notin (..)`, `k`, `!k`.

    Raises ValueError on a selector the API server would reject.
    """
    return all(r.matches(labels) for r in parse_selector(selector))
