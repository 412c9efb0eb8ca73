"""Rate limit service configuration: envoyproxy/ratelimit's YAML files, loaded and checked.

Why re-implement rather than translate: Envoy's ``RateLimitService`` front door must accept
the configuration files operators already run upstream, unchanged, and refuse what
upstream refuses, so that moving a deployment here is a change of address, not a
rewrite. Each file holds one ``domain`` and a tree of ``descriptors``; a directory's
``*.yaml`` and ``*.yml`` files are its whole configuration, and a domain defined twice is
refused (upstream's default; its ``MERGE_DOMAIN_CONFIG`` is not offered).

What upstream refuses is refused here, each error naming the file and the path inside it:
a YAML syntax error or a key repeated in one mapping, a key outside upstream's set (or
this service's ``x_`` extensions, see :mod:`rls.limits`), a list item that is not a
mapping, an empty ``domain``, a descriptor without ``key``, a ``key``/``value`` pair
repeated at one level, an unknown unit, a unit beside ``unlimited: true``, an empty
``replaces`` name or a rule replacing itself, and ``share_threshold`` on a value without
a ``*``. Stricter than upstream: keys are checked per level (upstream accepts any of its
keys at any level), and a limit's name must suit a header (``limiter.policy.NAME_PATTERN``).

Run ``python -m rls.config check DIR`` to validate a change before deploying it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from rls.errors import ConfigError, Location
from rls.limits import RateLimitSpec, resolve_rate_limit
from rls.source import Tree, load_yaml, mapping, optional_list, to_bool, to_str

__all__ = [
    "Config",
    "Descriptor",
    "Domain",
    "Level",
    "Rule",
    "load_directory",
    "load_file",
    "merge",
    "parse",
]

_ROOT_KEYS = frozenset({"domain", "descriptors"})
_DESCRIPTOR_KEYS = frozenset(
    {"key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode"}
    | {"detailed_metric", "value_to_metric", "share_threshold", "metadata"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What a descriptor with a ``rate_limit`` block enforces, and where it was written
    (``file`` and ``path``, for logs and for ``check``'s listing)."""

    spec: RateLimitSpec
    shadow: bool
    quota_mode: bool
    detailed_metric: bool
    file: str
    path: str
    #: The rule's name in statistics, as upstream's ``ratelimit.service.rate_limit.
    #: <domain>.<stat_key>``: each node's key, with ``_<value>`` when it has one, joined
    #: by dots from the top of the tree (``path_/search.user_id``).
    stat_key: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Descriptor:
    """One node of a domain's tree. ``value`` is ``None`` for a key-only node (matches any
    value); ``wildcard`` holds a value's pieces split on ``*`` when it has one."""

    key: str
    value: str | None
    rule: Rule | None
    children: Level
    wildcard: tuple[str, ...] | None = None
    share_threshold: bool = False
    value_to_metric: bool = False
    metadata: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def matches_wildcard(self, value: str) -> bool:
        """Whether ``value`` fits this node's wildcard: each ``*`` stands for zero or more
        characters, the literal pieces in order, not overlapping."""
        parts = self.wildcard
        if parts is None:
            return False
        head, *middle, tail = parts
        if len(value) < sum(map(len, parts)):
            return False
        if not (value.startswith(head) and value.endswith(tail)):
            return False
        rest = value[len(head) : len(value) - len(tail)]
        for piece in middle:
            found = rest.find(piece)
            if found < 0:
                return False
            rest = rest[found + len(piece) :]
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Level:
    """One ``descriptors`` list, indexed the way matching looks it up: exact
    ``(key, value)`` pairs, then wildcard values in file order, then key-only nodes."""

    exact: Mapping[tuple[str, str], Descriptor]
    wildcards: tuple[Descriptor, ...]
    any_value: Mapping[str, Descriptor]

    def nodes(self) -> tuple[Descriptor, ...]:
        """Every node of the level: exact pairs, wildcards, then key-only nodes."""
        return (*self.exact.values(), *self.wildcards, *self.any_value.values())


@dataclasses.dataclass(frozen=True, slots=True)
class Domain:
    """One file's domain and its tree of descriptors."""

    name: str
    file: str
    descriptors: Level


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Every domain the service knows, by name."""

    domains: Mapping[str, Domain]


def parse(text: str, file: str) -> Domain:
    """The domain of one file's ``text``; ``file`` is only the name errors carry."""
    top = Location(file)
    document = load_yaml(text, top)
    root = mapping({} if document is None or document == "" else document, top, _ROOT_KEYS)
    name = to_str(root.get("domain"), top.key("domain"))
    if not name:
        raise top.error("config file cannot have empty domain")
    return Domain(name, file, _level(root.get("descriptors"), top.key("descriptors"), ""))


def _level(value: Tree, where: Location, stat_prefix: str) -> Level:
    """One ``descriptors`` list; a ``key``/``value`` pair may appear once in it."""
    exact: dict[tuple[str, str], Descriptor] = {}
    wildcards: dict[tuple[str, str], Descriptor] = {}
    any_value: dict[str, Descriptor] = {}
    for i, item in enumerate(optional_list(value, where)):
        node = _descriptor(item, where.index(i), stat_prefix)
        if node.value is None:
            taken = node.key in any_value
            any_value[node.key] = node
        else:
            pair = (node.key, node.value)
            taken = pair in exact or pair in wildcards
            (wildcards if node.wildcard is not None else exact)[pair] = node
        if taken:
            shown = node.key if node.value is None else f"{node.key}={node.value}"
            raise where.index(i).error(f'duplicate descriptor "{shown}" at this level')
    return Level(exact, tuple(wildcards.values()), any_value)


def _descriptor(value: Tree, where: Location, stat_prefix: str) -> Descriptor:
    """One descriptor, its rule and its nested list; ``stat_prefix`` is its parent's
    statistics key."""
    fields = mapping(value, where, _DESCRIPTOR_KEYS)
    key = to_str(fields.get("key"), where.key("key"))
    if not key:
        raise where.error("descriptor has empty key")
    # An empty value is no value, as upstream's `Value != ""` test has it.
    text = to_str(fields.get("value"), where.key("value"))
    share = to_bool(fields.get("share_threshold"), where.key("share_threshold"))
    if share and "*" not in text:
        raise where.key("share_threshold").error(
            "share_threshold can only be used with wildcard values (containing '*')"
        )
    shadow = to_bool(fields.get("shadow_mode"), where.key("shadow_mode"))
    quota_mode = to_bool(fields.get("quota_mode"), where.key("quota_mode"))
    detailed_metric = to_bool(fields.get("detailed_metric"), where.key("detailed_metric"))
    stat_key = stat_prefix + ("." if stat_prefix else "") + key + (f"_{text}" if text else "")
    rule = None
    if fields.get("rate_limit") not in (None, ""):
        spec = resolve_rate_limit(fields["rate_limit"], where.key("rate_limit"))
        rule = Rule(spec, shadow, quota_mode, detailed_metric, where.file, where.path, stat_key)
    metadata = fields.get("metadata")
    if metadata not in (None, "") and not isinstance(metadata, dict):
        raise where.key("metadata").error("expected a mapping")
    return Descriptor(
        key=key,
        value=text or None,
        rule=rule,
        children=_level(fields.get("descriptors"), where.key("descriptors"), stat_key),
        wildcard=tuple(text.split("*")) if "*" in text else None,
        share_threshold=share,
        value_to_metric=to_bool(fields.get("value_to_metric"), where.key("value_to_metric")),
        metadata=metadata if isinstance(metadata, dict) else {},
    )


def merge(domains: Iterable[Domain]) -> Config:
    """One configuration of several files' domains; a domain in two files is refused,
    the error naming the second file and the first."""
    by_name: dict[str, Domain] = {}
    for domain in domains:
        if domain.name in by_name:
            raise ConfigError(
                f'duplicate domain "{domain.name}" (already in {by_name[domain.name].file})',
                file=domain.file,
                path="domain",
            )
        by_name[domain.name] = domain
    return Config(by_name)


def load_file(path: Path | str) -> Domain:
    """The domain of one file, errors naming the file as ``path`` is written."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from exc
    return parse(text, str(path))


def load_directory(directory: Path | str) -> Config:
    """Every ``*.yaml`` and ``*.yml`` file directly in ``directory``, in name order (so
    that the same files always give the same first error)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError("not a directory", file=str(directory))
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return merge(load_file(p) for p in files)


if __name__ == "__main__":
    from rls.check import main

    sys.exit(main(sys.argv[1:]))
