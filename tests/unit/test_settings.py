"""Settings: read once from RATELIMIT_* variables, validated, documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from api.settings import Settings
from limiter import (
    STRATEGIES,
    STRATEGY_NAMES,
    CasStrategy,
    EntryProcessorStrategy,
    LockStrategy,
    SettingsError,
    create_strategy,
)

SETTINGS_TABLE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_defaults_match_the_original() -> None:
    """Without variables: entry_processor, 100 requests per 60 s, three local members."""
    settings = Settings.from_env({})
    assert settings.strategy == "entry_processor"
    assert (settings.default_limit, settings.default_window_seconds) == (100, 60)
    assert settings.member_addresses == ["127.0.0.1:5701", "127.0.0.1:5702", "127.0.0.1:5703"]


def test_values_are_read_and_typed() -> None:
    """Each variable is parsed to its field's type."""
    settings = Settings.from_env(
        {
            "RATELIMIT_STRATEGY": "cas",
            "RATELIMIT_DECISION_TIMEOUT_SECONDS": "0.25",
            "RATELIMIT_LOCK_WAIT_SECONDS": "0.2",
            "RATELIMIT_CAS_MAX_ATTEMPTS": "7",
            "RATELIMIT_HAZELCAST_MEMBERS": " 10.0.0.1:5701 , 10.0.0.2:5701 ",
        }
    )
    assert settings.strategy == "cas"
    assert settings.decision_timeout_seconds == 0.25
    assert settings.cas_max_attempts == 7
    assert settings.member_addresses == ["10.0.0.1:5701", "10.0.0.2:5701"]


def test_unknown_strategy_fails_and_lists_the_allowed_ones() -> None:
    """A strategy name that does not exist stops start-up with the list of valid ones."""
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"RATELIMIT_STRATEGY": "magic"})
    for name in STRATEGY_NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RATELIMIT_CAS_MAX_ATTEMPTS", "many", "not a valid int"),
        ("RATELIMIT_DECISION_TIMEOUT_SECONDS", "0", "must be positive"),
        ("RATELIMIT_FAILURE_MODE", "sideways", "open, closed"),
        ("RATELIMIT_HAZELCAST_MEMBERS", " , ", "names no member"),
        ("RATELIMIT_LOCK_WAIT_SECONDS", "1.0", "below RATELIMIT_DECISION_TIMEOUT_SECONDS"),
        ("RATELIMIT_LOCK_LEASE_SECONDS", "1.0", "exceed RATELIMIT_DECISION_TIMEOUT_SECONDS"),
        ("RATELIMIT_EXPIRY_GRACE_SECONDS", "1.2", "at least RATELIMIT_MAX_CLOCK_SKEW_SECONDS"),
        ("RATELIMIT_COUNTER_SHARDS", "-1", "must be 1 or more"),
        ("RATELIMIT_MAX_COST", "0", "must be positive"),
        ("RATELIMIT_MAX_COST", "1000000001", "exceeds RATELIMIT_MAX_LIMIT"),
        ("RATELIMIT_NEAR_LIMIT_SHARE", "1.5", "at most 1"),
        ("RATELIMIT_NEAR_LIMIT_SHARE", "-0.1", "0 or more"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    """A malformed or out-of-range value is refused with its variable's name."""
    with pytest.raises(SettingsError, match=message) as error:
        Settings.from_env({variable: value})
    assert variable in str(error.value) or "MEMBERS" in str(error.value)


def test_zero_counter_shards_is_refused_at_start() -> None:
    """RATELIMIT_COUNTER_SHARDS=0 (the removed one-entry-per-key layout) is refused with
    the variable's name and its least value."""
    with pytest.raises(SettingsError, match=r"RATELIMIT_COUNTER_SHARDS must be 1 or more, got 0"):
        Settings.from_env({"RATELIMIT_COUNTER_SHARDS": "0"})


def test_docs_list_every_setting_and_its_default() -> None:
    """docs/operations.md's settings table lists every field with the default this module has."""
    text = SETTINGS_TABLE.read_text()
    rows = dict(re.findall(r"^\| `(RATELIMIT_[A-Z_]+)` \| `([^`]*)` \|", text, re.MULTILINE))
    expected = {
        f"RATELIMIT_{field.name.upper()}": str(field.default)
        for field in dataclasses.fields(Settings)
    }
    assert rows == expected


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_each_strategy_is_built_from_the_settings_alone(name: str) -> None:
    """create_strategy builds the named class with the settings' values (the classes have
    no defaults of their own to fall back on)."""
    settings = Settings.from_env(
        {
            "RATELIMIT_DECISION_TIMEOUT_SECONDS": "3",
            "RATELIMIT_LOCK_WAIT_SECONDS": "2.5",
            "RATELIMIT_LOCK_LEASE_SECONDS": "7",
            "RATELIMIT_CAS_MAX_ATTEMPTS": "5",
            "RATELIMIT_MAX_QUEUED_PER_KEY": "9",
            "RATELIMIT_EXPIRY_GRACE_SECONDS": "4",
            "RATELIMIT_COUNTER_SHARDS": "3",
        }
    )
    strategy = create_strategy(settings, counters=None, name=name)
    assert type(strategy) is STRATEGIES[name] and strategy.name == name
    assert (strategy.decision_timeout_seconds, strategy.lanes.max_queued) == (3.0, 9)
    assert strategy.expiry_grace_ms == 4000
    if isinstance(strategy, LockStrategy):
        assert (strategy.lock_wait_seconds, strategy.lock_lease_seconds) == (2.5, 7.0)
    if isinstance(strategy, CasStrategy):
        assert strategy.max_attempts == 5
    if isinstance(strategy, EntryProcessorStrategy):
        assert strategy.shard_count == 3
