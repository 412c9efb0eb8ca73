"""``python -m rls.config check DIR``: an operator's look at a configuration before deploying it.

Why: a refused configuration should be found on the operator's desk, not by the service
at start-up. ``check`` loads the directory exactly as the service will, prints each
domain's rules (so a change can be read back as the service understands it) or the first
error with its file and path, and exits 1 on an error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

from rls.config import Config, Level, load_directory
from rls.errors import ConfigError

__all__ = ["describe", "main"]

_USAGE = "usage: python -m rls.config check DIR"


def describe(config: Config) -> Iterator[str]:
    """One line per domain, then one per rule: its descriptor path and what it enforces."""
    for name in sorted(config.domains):
        domain = config.domains[name]
        yield f"domain {name} ({domain.file})"
        yield from _rules(domain.descriptors, "  ")


def _rules(level: Level, indent: str) -> Iterator[str]:
    for node in level.nodes():
        shown = f"{node.key}={node.value}" if node.value is not None else f"{node.key} (each value)"
        line = f"{indent}{shown}"
        rule = node.rule
        if rule is not None:
            spec = rule.spec
            if spec.unlimited:
                line += ": unlimited"
            elif spec.blocked:
                line += ": blocked (requests_per_unit 0)"
            else:
                assert spec.policy is not None
                line += ": " + ", ".join(
                    f"{limit.name} {limit.limit}/{limit.window_seconds}s {limit.algorithm.value}"
                    + (f" burst {limit.burst}" if limit.burst else "")
                    + (" shadow" if limit.shadow else "")
                    for limit in spec.policy.limits
                )
            flags = [f"name {spec.name}"] if spec.name else []
            flags += [f"replaces {', '.join(spec.replaces)}"] if spec.replaces else []
            flags += ["shadow_mode"] if rule.shadow else []
            if flags:
                line += f" [{'; '.join(flags)}]"
        yield line
        yield from _rules(node.children, indent + "  ")


def main(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run ``check DIR``; 0 if the configuration loads, 1 on its first error, 2 on usage."""
    if len(argv) != 2 or argv[0] != "check":
        print(_USAGE, file=err)
        return 2
    try:
        config = load_directory(argv[1])
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 1
    for line in describe(config):
        print(line, file=out)
    return 0
