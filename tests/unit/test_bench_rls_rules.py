"""Where the rate limit benchmark's replicas read their rules: the chosen file is what
they serve, under the default's name, and a later call with another file replaces it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.rls import CONFIG_FILE, DOMAIN
from benchmarks.rls.rules import config_dir, replica_env, shown
from rls.config import load_directory
from rls.matching import match

UNLIMITED = CONFIG_FILE.parent / "unlimited" / CONFIG_FILE.name


def fake_stack(tmp_path: Path) -> Any:
    return SimpleNamespace(run_dir=tmp_path)


def test_the_replicas_serve_the_file_asked_for(tmp_path: Path) -> None:
    """The default rules first, then the lifted ones: the folder holds only the latter."""
    stack = fake_stack(tmp_path)
    folder = Path(replica_env(stack)["RATELIMIT_RLS_CONFIG_DIR"])
    assert (folder / CONFIG_FILE.name).read_text() == CONFIG_FILE.read_text()
    assert config_dir(stack, UNLIMITED) == folder
    assert [p.name for p in folder.iterdir()] == [CONFIG_FILE.name]
    assert (folder / CONFIG_FILE.name).read_text() == UNLIMITED.read_text()


def test_the_lifted_rules_match_what_the_default_limits_and_limit_nothing() -> None:
    """Each descriptor the default rules limit is matched by the lifted file, unlimited."""
    default, lifted = load_directory(CONFIG_FILE.parent), load_directory(UNLIMITED.parent)
    for entry in [("remote_address", "10.200.0.1"), ("user_id", "u"), ("tenant", "t")]:
        limited, free = match(default, DOMAIN, [entry]), match(lifted, DOMAIN, [entry])
        assert limited is not None and not limited.unlimited, entry
        assert free is not None and free.unlimited, entry


def test_paths_in_the_repository_are_shown_from_its_root(tmp_path: Path) -> None:
    """A report names the rules from the repository's root, others as given."""
    assert shown(UNLIMITED) == "benchmarks/rls/unlimited/storefront.yaml"
    assert shown(tmp_path / "x.yaml") == str(tmp_path / "x.yaml")
