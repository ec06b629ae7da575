"""A griffe extension for the API reference (``mkdocs.yml`` loads it, and so does
``tests/test_docs.py``, which checks what the reference shows).

polybus documents a constant with ``#:`` comment lines right above it, and assigns a few
constants together (``BUS, PRODUCER, CONSUMER = "bus", "producer", "consumer"``). griffe
reads neither by itself: this extension makes the comment the attribute's docstring and
gives each name of such a tuple assignment an attribute of its own, documented by the
comment above the line.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe

_MARK = "#:"


def comment_above(code: str, lineno: int) -> str | None:
    """The text of the ``#:`` lines right above line ``lineno`` (1-based) of ``code``."""
    lines = code.splitlines()
    found: list[str] = []
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith(_MARK):
        found.append(lines[index].strip()[len(_MARK) :].removeprefix(" "))
        index -= 1
    return "\n".join(reversed(found)) or None


def _docstring(text: str | None, lineno: int, parent: griffe.Object) -> griffe.Docstring | None:
    if text is None:
        return None
    return griffe.Docstring(text, lineno=lineno, endlineno=lineno, parent=parent)


class CommentDocstrings(griffe.Extension):
    """``#:`` comments as docstrings, and one attribute per name of ``A, B = x, y``."""

    def on_attribute_instance(
        self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any
    ) -> None:
        if attr.docstring is not None or not isinstance(agent, griffe.Visitor):
            return
        if attr.lineno is not None:
            text = comment_above(agent.code, attr.lineno)
            attr.docstring = _docstring(text, attr.lineno - 1, attr)

    def on_attribute_node(self, *, node: Any, agent: Any, **kwargs: Any) -> None:
        if not (isinstance(agent, griffe.Visitor) and isinstance(node, ast.Assign)):
            return
        parent = agent.current
        if parent.kind is not griffe.Kind.MODULE or len(node.targets) != 1:
            return
        target, value = node.targets[0], node.value
        if not (isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)):
            return
        if len(target.elts) != len(value.elts):
            return
        if not all(isinstance(name, ast.Name) for name in target.elts):
            return
        text = comment_above(agent.code, node.lineno)
        for name, one in zip(target.elts, value.elts, strict=True):
            assert isinstance(name, ast.Name)
            attribute = griffe.Attribute(
                name.id, value=ast.unparse(one), lineno=node.lineno, endlineno=node.end_lineno
            )
            attribute.docstring = _docstring(text, node.lineno - 1, attribute)
            attribute.labels.add("module-attribute")
            parent.set_member(name.id, attribute)
