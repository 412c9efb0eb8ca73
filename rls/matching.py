"""Which rule a request descriptor falls under, and which counter it counts in.

Why as upstream does it: Envoy sends a domain and, per descriptor, a list of
``(key, value)`` entries; envoyproxy/ratelimit (``GetLimit`` in
src/config/config_impl.go) walks the domain's tree one entry per level:

* at each level the node for ``key`` *and* ``value`` is tried first, then a node whose
  value is a ``*`` wildcard (in file order), then the key-only node (any value);
  having chosen, it never backtracks to a less specific node;
* every entry must find a node, and the rule is the one of the node the *last* entry
  lands on: a request with fewer entries than the tree is deep stops on a node that
  usually has no rule, and one with more entries than the tree runs off its end; both
  are "no limit" (README "Example 4");
* no domain, no node, or a node without ``rate_limit``: no limit.

The counter key mirrors what upstream counts together (``GenerateCacheKey`` in
src/limiter/cache_key.go): the domain and *every entry's key and request value*, in
order. So a key-only node counts each value apart (one counter per IP, per user), while
a key+value node shares one counter, because every request reaching it carries that same
value. A wildcard node counts each value apart too, unless ``share_threshold`` is set:
then the entry contributes the pattern, and all matching values share one counter.
Upstream appends the window start; here the limiter keeps one state per limit (its
``slot``) and starts windows itself, so the key names only *who* is counted.

The key is a ``client_id`` for :meth:`limiter.strategy.Strategy.decide_policy`. Its
pieces are percent-encoded so that separators in keys or values cannot make two
descriptors collide; a key longer than :data:`MAX_COUNTER_KEY` (request values such as
paths are unbounded) becomes its SHA-256, so that every stored counter has a bounded key
in the cluster's memory and every replica, in any process, derives the same one (Python's
``hash`` is salted per process; a cryptographic hash also leaves no practical collision).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from limiter.policy import Policy
from rls.config import Config, Descriptor, Rule

__all__ = ["MAX_COUNTER_KEY", "Match", "counter_key", "drop_replaced", "find_descriptor", "match"]

#: The longest counter key kept as written; longer ones are hashed.
MAX_COUNTER_KEY = 200

#: Characters left as they are in a counter key's pieces; ``:``, ``|`` and ``=`` (the
#: separators) and ``%`` are always encoded.
_SAFE = "-_.~/*@"


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    """A request descriptor's rule and counter.

    ``policy`` is ``None`` when ``unlimited`` (answer OK without counting) or
    ``blocked`` (``requests_per_unit: 0``: over the limit at once). ``shadow`` means the
    service counts and reports but always answers OK. ``name`` and ``replaces`` are the
    rule's, for :func:`drop_replaced`.
    """

    domain: str
    rule: Rule
    counter_key: str

    @property
    def policy(self) -> Policy | None:
        """What the limiter decides with, if anything."""
        return self.rule.spec.policy

    @property
    def shadow(self) -> bool:
        """Whether the rule is in shadow mode (never denies)."""
        return self.rule.shadow

    @property
    def unlimited(self) -> bool:
        """Whether the rule is ``unlimited: true``."""
        return self.rule.spec.unlimited

    @property
    def blocked(self) -> bool:
        """Whether the rule allows no request at all (``requests_per_unit: 0``)."""
        return self.rule.spec.blocked

    @property
    def name(self) -> str | None:
        """The rule's ``rate_limit.name``, if it has one."""
        return self.rule.spec.name

    @property
    def replaces(self) -> tuple[str, ...]:
        """The names of the rules this one replaces."""
        return self.rule.spec.replaces


def find_descriptor(
    config: Config, domain: str, entries: Sequence[tuple[str, str]]
) -> tuple[Descriptor, tuple[str, ...]] | None:
    """The node the last entry lands on and, per entry, the value it is counted under
    (the request's value, or a shared wildcard's pattern); ``None`` if some entry finds
    no node or the tree ends before the entries do."""
    known = config.domains.get(domain)
    if known is None or not entries:
        return None
    level = known.descriptors
    node: Descriptor | None = None
    counted: list[str] = []
    for i, (key, value) in enumerate(entries):
        if i > 0:
            assert node is not None
            if not node.children.nodes():
                return None
            level = node.children
        node = level.exact.get((key, value))
        if node is None:
            node = next(
                (n for n in level.wildcards if n.key == key and n.matches_wildcard(value)), None
            )
        if node is None:
            node = level.any_value.get(key)
        if node is None:
            return None
        shared = node.share_threshold and node.wildcard is not None
        counted.append(node.value if shared and node.value is not None else value)
    assert node is not None
    return node, tuple(counted)


def match(config: Config, domain: str, entries: Sequence[tuple[str, str]]) -> Match | None:
    """The rule and counter of one request descriptor, or ``None``: no limit."""
    found = find_descriptor(config, domain, entries)
    if found is None or found[0].rule is None:
        return None
    node, counted = found
    assert node.rule is not None
    keys = [key for key, _ in entries]
    return Match(domain, node.rule, counter_key(domain, zip(keys, counted, strict=True)))


def counter_key(domain: str, entries: Iterable[tuple[str, str]]) -> str:
    """``rls:<domain>|<key>=<value>|...``, each piece percent-encoded; past
    :data:`MAX_COUNTER_KEY` characters, ``rls#`` and the SHA-256 of that text."""
    pieces = [quote(domain, safe=_SAFE)]
    pieces += [f"{quote(key, safe=_SAFE)}={quote(value, safe=_SAFE)}" for key, value in entries]
    key = "rls:" + "|".join(pieces)
    if len(key) <= MAX_COUNTER_KEY:
        return key
    return "rls#" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def drop_replaced(matches: Sequence[Match | None]) -> list[Match | None]:
    """A request's matches (one per descriptor, in order) with every rule that another
    match ``replaces`` set to ``None``, as upstream's service does before counting: the
    replaced rule is neither decided nor counted for this request."""
    replaced = {name for m in matches if m is not None for name in m.replaces}
    return [None if m is not None and m.name in replaced else m for m in matches]
