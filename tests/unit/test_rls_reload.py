"""Picking up a changed configuration directory: a valid change is loaded, an invalid one
is rejected (logged, counted) with the previous configuration kept, an unchanged
directory is not read again, and a first load that fails leaves no configuration."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from rls.reload import ConfigWatch

pytestmark = pytest.mark.unit

GOOD = (
    "domain: shop\ndescriptors:\n"
    "  - key: ip\n    rate_limit: {unit: second, requests_per_unit: %d}\n"
)


def write(path: Path, text: str, tick: int) -> None:
    """Writes ``text`` with a distinct modification time (``tick`` seconds past a fixed
    one), as a later edit would have, whatever the filesystem's time granularity."""
    path.write_text(text)
    os.utime(path, ns=(1_700_000_000_000_000_000 + tick * 10**9,) * 2)


def limit(watch: ConfigWatch) -> int:
    assert watch.config is not None
    rule = watch.config.domains["shop"].descriptors.any_value["ip"].rule
    assert rule is not None and rule.spec.policy is not None
    return rule.spec.policy.limits[0].limit


def test_a_changed_file_is_loaded_and_an_unchanged_one_is_not_read_again(tmp_path: Path) -> None:
    """The first load, a change of limit, then a poll that finds nothing new."""
    outcomes: list[str] = []
    write(tmp_path / "shop.yaml", GOOD % 10, 0)
    watch = ConfigWatch(tmp_path, 1.0, outcomes.append)
    assert watch.load_now() and limit(watch) == 10
    write(tmp_path / "shop.yaml", GOOD % 20, 1)
    assert watch.load_now() and limit(watch) == 20
    assert watch.load_now()
    assert outcomes == ["loaded", "loaded"]


def test_an_invalid_file_is_rejected_and_the_previous_configuration_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that fails validation: logged with its file and path, counted as rejected,
    the configuration in force unchanged; fixing it loads it."""
    outcomes: list[str] = []
    write(tmp_path / "shop.yaml", GOOD % 10, 0)
    watch = ConfigWatch(tmp_path, 1.0, outcomes.append)
    watch.load_now()
    write(tmp_path / "shop.yaml", (GOOD % 10).replace("second", "fortnight"), 1)
    with caplog.at_level(logging.ERROR, logger="ratelimit.rls"):
        assert not watch.load_now()
    assert limit(watch) == 10
    assert 'shop.yaml: descriptors[0].rate_limit.unit: unknown unit "fortnight"' in caplog.text
    assert "previous configuration stays in force" in caplog.text
    write(tmp_path / "shop.yaml", GOOD % 30, 2)
    assert watch.load_now() and limit(watch) == 30
    assert outcomes == ["loaded", "rejected", "loaded"]


def test_a_new_file_beside_the_others_is_picked_up(tmp_path: Path) -> None:
    """Adding a file (a new domain) is a change of the directory."""
    write(tmp_path / "shop.yaml", GOOD % 10, 0)
    watch = ConfigWatch(tmp_path, 1.0)
    watch.load_now()
    write(tmp_path / "other.yml", "domain: other\n", 1)
    assert watch.load_now()
    assert watch.config is not None and sorted(watch.config.domains) == ["other", "shop"]


def test_a_first_load_that_fails_leaves_no_configuration(tmp_path: Path) -> None:
    """No valid configuration yet: ``config`` stays None (the service answers
    UNAVAILABLE rather than OK to everything)."""
    write(tmp_path / "shop.yaml", "domain: shop\nnonsense: 1\n", 0)
    watch = ConfigWatch(tmp_path, 1.0)
    assert not watch.load_now()
    assert watch.config is None
