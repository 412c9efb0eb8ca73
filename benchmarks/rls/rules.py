"""Where the replicas of the rate limit part read their rules from: one folder of the
stack's run directory, holding a copy of the chosen file (``storefront.yaml`` unless
``--rls-config`` names another) under the default's name, so that replicas started for
the HTTP parts serve the part's rules too, and pick up another file within a second
(they poll the folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.rls import CONFIG_FILE
from stack import Stack

__all__ = ["config_dir", "replica_env", "shown"]


def config_dir(stack: Stack, rules: Path = CONFIG_FILE) -> Path:
    """The folder of the rules the replicas read, holding a copy of ``rules``."""
    folder = stack.run_dir / "rls" / "config"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(rules, folder / CONFIG_FILE.name)
    return folder


def replica_env(stack: Stack, rules: Path = CONFIG_FILE) -> dict[str, str]:
    """What a replica needs to serve this part's rules (``rules`` copied in) over gRPC
    (its gRPC port comes from the stack's layout): the suite gives it to the HTTP parts'
    replicas too, so that this part can run on them."""
    return {"RATELIMIT_RLS_CONFIG_DIR": str(config_dir(stack, rules))}


def shown(path: Path) -> str:
    """``path`` from the repository's root when it is inside it."""
    root = CONFIG_FILE.parents[2]
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)
