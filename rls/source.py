"""Reading a configuration file's YAML the way envoyproxy/ratelimit's Go loader reads it.

Why not ``yaml.safe_load``: upstream decodes into Go string fields, so ``value: 500`` and
``value: true`` are the strings ``"500"`` and ``"true"`` (the scalar's text, not a
number's canonical form: ``value: 1.50`` stays ``"1.50"``). Parsing every scalar as text
(PyYAML's ``BaseLoader``) and converting the few typed fields here keeps that: a
descriptor matches exactly the text the operator wrote. A key repeated in one mapping is
refused, as Go's YAML decoder refuses it, instead of silently keeping the last one.

Each helper checks one value's shape and raises a :class:`rls.errors.ConfigError` at its
:class:`rls.errors.Location`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping

import yaml
from yaml.nodes import MappingNode

from rls.errors import Location

__all__ = [
    "MAX_UINT32",
    "Tree",
    "load_yaml",
    "mapping",
    "optional_list",
    "to_bool",
    "to_str",
    "to_uint",
]

#: Anything a YAML document parsed as text holds: strings, lists and mappings of them.
Tree = object

#: ``requests_per_unit`` is a ``uint32`` upstream.
MAX_UINT32 = 2**32 - 1

#: YAML 1.1 booleans, which Go's yaml.v2 (upstream's decoder) accepts for a bool field.
_TRUE = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"})
_FALSE = frozenset({"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"})

_UINT = re.compile(r"\+?[0-9]+")


class _TextLoader(yaml.BaseLoader):
    """Every scalar as its text; a mapping that repeats a key is an error."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, where: Location) -> Tree:
    """The document in ``text``, scalars as text; a syntax error names the file."""
    try:
        return yaml.load(text, Loader=_TextLoader)  # a text-only loader: builds no objects
    except yaml.YAMLError as exc:
        raise where.error(f"error loading config file: {exc}") from exc


def _absent(value: Tree) -> bool:
    """A key written with nothing after it (``rate_limit:``) is as if not written, as
    upstream's decoder leaves a nil pointer or an empty list."""
    return value is None or value == ""


def mapping(value: Tree, where: Location, allowed: frozenset[str]) -> Mapping[str, Tree]:
    """``value`` as a mapping whose keys are all in ``allowed``; the first unknown key is
    named (upstream refuses any key outside its own set, so a typo never goes unseen)."""
    if not isinstance(value, dict):
        raise where.error(f"expected a mapping, got {_shape(value)}")
    for key in value:
        if key not in allowed:
            raise where.key(str(key)).error(f"unknown key {str(key)!r}")
    return value


def optional_list(value: Tree, where: Location) -> list[Tree]:
    """``value`` as a list, an absent one as empty."""
    if _absent(value):
        return []
    if not isinstance(value, list):
        raise where.error(f"expected a list, got {_shape(value)}")
    return value


def to_str(value: Tree, where: Location) -> str:
    """A scalar's text; an absent one is the empty string (Go's zero value)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise where.error(f"expected a string, got {_shape(value)}")
    return value


def to_bool(value: Tree, where: Location) -> bool:
    """A YAML 1.1 boolean; an absent one is false."""
    if _absent(value):
        return False
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    raise where.error(f"expected true or false, got {_shape(value)}")


def to_uint(value: Tree, where: Location, *, maximum: int = MAX_UINT32) -> int:
    """A whole number from 0 to ``maximum``; an absent one is 0 (Go's zero value)."""
    if _absent(value):
        return 0
    if isinstance(value, str) and _UINT.fullmatch(value):
        number = int(value)
        if number <= maximum:
            return number
    raise where.error(f"expected a whole number from 0 to {maximum}, got {_shape(value)}")


def _shape(value: Tree) -> str:
    """How an unexpected value is shown in an error: scalars quoted, else their kind."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing"
