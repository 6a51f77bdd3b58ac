"""Kubernetes label selectors, as the API server parses and matches them.

Owns the selector grammar (`k=v`, `k==v`, `k!=v`, `k in (..)`, `k notin (..)`, `k`, `!k`)
and matching a selector against an object's labels. Imports the standard library only.
See https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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


def selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: `k=v`, `k!=v`, `k in (a,b)`, `k notin (..)`, `k`, `!k`.

    Raises ValueError on a selector the API server would reject.
    """
    if not selector:
        return True
    for requirement in _split_requirements(selector):
        if match := _SET_REQ.match(requirement):
            values = {v.strip() for v in match["values"].split(",") if v.strip()}
            present = match["key"] in labels and labels[match["key"]] in values
            if present != (match["op"] == "in"):
                return False
        elif match := _EQ_REQ.match(requirement):
            equal = labels.get(match["key"]) == match["value"]
            if equal != (match["op"] != "!="):
                return False
        elif match := _KEY.match(requirement):
            if (match["key"] in labels) == bool(match["neg"]):
                return False
        else:
            raise ValueError(f"unable to parse requirement: {requirement!r}")
    return True
