"""Hardened loading of the small YAML documents people write by hand.

Owns the rules every input file obeys before any model sees it: UTF-8, at most
64 KiB, one document, a mapping at the top, no tabs, no duplicate keys, no
anchors or aliases (which is what makes an alias bomb impossible), no custom tags.
It also remembers the line of every key so that errors can point at it.
Imports only PyYAML.

A file with no `&` and no `*` anywhere can hold no anchor and no alias, so it
is composed by libyaml's C parser when PyYAML has it (some 20 times faster:
a cycle reads every demo and status file); every other rule is checked on
the composed nodes exactly as before, and any file the C path cannot take
(a YAML error included) goes through the pure-Python loader, whose errors
are the ones users see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 64 * 1024

Path = tuple[str | int, ...]


class YamlError(Exception):
    """A file that cannot become a document: carries the 1-based line when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class Document:
    data: dict[str, Any]
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """The line of the deepest key on `path` that exists in the file."""
        key: Path = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


_CLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise YamlError(
                "YAML aliases are not allowed (they can expand without bound)",
                event.start_mark.line + 1,
            )
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise YamlError("YAML anchors are not allowed", event.start_mark.line + 1)
        return super().compose_node(parent, index)


def _construct(loader: yaml.SafeLoader, node: Node, path: Path, lines: dict[Path, int]) -> Any:
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlError("mapping keys must be plain strings", key_node.start_mark.line + 1)
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise YamlError(
                    f"duplicate key {'.'.join(map(str, (*path, key)))!r}",
                    key_node.start_mark.line + 1,
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _construct(loader, value_node, (*path, key), lines)
        return result
    if isinstance(node, SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_construct(loader, item, (*path, index), lines))
        return items
    return loader.construct_object(node)


def load_document(data: bytes) -> Document:
    """Parse one hand-written YAML mapping, or raise YamlError saying why not."""
    if len(data) > MAX_BYTES:
        raise YamlError(f"file is {len(data)} bytes; the limit is {MAX_BYTES} (64 KiB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlError(f"not valid UTF-8 (byte {exc.start})", line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    for number, line_text in enumerate(text.splitlines(), start=1):
        if "\t" in line_text:
            raise YamlError("tab characters are not allowed; indent with spaces", number)
    if _CLoader is not None and "&" not in text and "*" not in text:
        fast = _fast_document(_CLoader, text)
        if fast is not None:
            return fast
    try:
        # the reader checks every character as it is built: a NUL byte fails here
        loader = _NoAliasLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise YamlError(
            f"not valid YAML: character #x{exc.character:04x} is not allowed", line
        ) from None
    return _document(loader)


def _fast_document(loader_class: type[yaml.SafeLoader], text: str) -> Document | None:
    """The document through libyaml, or None: then the pure-Python loader decides."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if not isinstance(node, MappingNode):
            return None
        lines: dict[Path, int] = {(): node.start_mark.line + 1}
        return Document(data=_construct(loader, node, (), lines), lines=lines)
    except (yaml.YAMLError, YamlError, RecursionError):
        return None
    finally:
        loader.dispose()


def _document(loader: _NoAliasLoader) -> Document:
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlError("file is empty; expected a Demo document", 1)
        lines: dict[Path, int] = {(): node.start_mark.line + 1}
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, SequenceNode) else "a single value"
            raise YamlError(f"expected a mapping at the top level, found {kind}", 1)
        value = _construct(loader, node, (), lines)
    except YamlError:
        raise
    except yaml.composer.ComposerError as exc:
        where = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise YamlError(f"only one YAML document per file: {exc.problem}", where) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(f"not valid YAML: {problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlError("YAML nesting is too deep") from None
    finally:
        loader.dispose()
    return Document(data=value, lines=lines)
