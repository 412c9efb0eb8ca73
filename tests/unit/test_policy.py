"""A policy's specs: what a limit and a list of limits accept, and what they refuse before
any rule sees them (fields of another algorithm, names unfit for a header, overflows)."""

from __future__ import annotations

from typing import Any

import pytest

from limiter.policy import MAX_LIMITS, Algorithm, Limit, Policy
from limiter.rule import Alignment

FIXED = Algorithm.FIXED_WINDOW
SLIDING = Algorithm.SLIDING_WINDOW
GCRA = Algorithm.GCRA


def test_a_fixed_window_aligns_to_the_clock_by_default() -> None:
    """A fixed window without an alignment counts in clock-aligned windows."""
    assert Limit("burst", FIXED, 10, 1).alignment is Alignment.CLOCK
    assert Limit("b", FIXED, 10, 1, Alignment.FIRST_REQUEST).alignment is Alignment.FIRST_REQUEST


def test_algorithms_are_numbered_in_declaration_order() -> None:
    """The algorithm numbers are PolicyRule.java's constants."""
    assert [a.wire_id for a in Algorithm] == [0, 1, 2]
    assert [str(a) for a in Algorithm] == ["fixed_window", "sliding_window", "gcra"]


@pytest.mark.parametrize(
    "name", ["burst", "daily", "a", "per-minute", "x_1", "a234567890123456789012345678901"]
)
def test_names_fit_for_a_header_are_accepted(name: str) -> None:
    """Short lower-case names of letters, digits, ``_`` and ``-`` are valid limit names."""
    assert Limit(name, FIXED, 1, 1).name == name


@pytest.mark.parametrize(
    "name", ["", "Burst", "1st", "-a", "a b", 'a"b', "a;b", "a|b", "é", "a" * 33, "a,b"]
)
def test_names_unfit_for_a_header_are_refused(name: str) -> None:
    """Empty, long, upper-case or punctuated names are refused (they would break a header,
    a metric label or the vector encoding)."""
    with pytest.raises(ValueError, match="name"):
        Limit(name, FIXED, 1, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": FIXED, "limit": 0}, "limit must be"),
        ({"algorithm": FIXED, "limit": 2**61 + 1}, "limit must be"),
        ({"algorithm": FIXED, "window_seconds": 0}, "window_seconds"),
        ({"algorithm": FIXED, "window_seconds": 2**61 // 1000 + 1}, "window_seconds"),
        ({"algorithm": "token_bucket"}, "unknown algorithm"),
        ({"algorithm": FIXED, "alignment": "sideways"}, "unknown alignment"),
        ({"algorithm": SLIDING, "alignment": Alignment.CLOCK}, "fixed_window only"),
        ({"algorithm": GCRA, "alignment": Alignment.FIRST_REQUEST}, "fixed_window only"),
        ({"algorithm": FIXED, "burst": 1}, "gcra only"),
        ({"algorithm": SLIDING, "burst": 1}, "gcra only"),
        ({"algorithm": GCRA, "burst": -1}, "burst must be"),
        ({"algorithm": GCRA, "window_seconds": 1, "burst": 2**61 // 1000}, "burst must be"),
        ({"algorithm": SLIDING, "limit": 2**61 // 1000 + 1, "window_seconds": 1}, "2\\*\\*61"),
    ],
)
def test_a_limit_out_of_range_or_with_a_foreign_field_is_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    """Limits and windows below 1, the rules' overflow bounds, and an alignment or a burst
    on an algorithm they do not belong to are refused when the spec is built."""
    fields: dict[str, Any] = {"name": "x", "limit": 5, "window_seconds": 60} | kwargs
    with pytest.raises(ValueError, match=message):
        Limit(**fields)


def test_the_largest_values_within_the_bounds_are_accepted() -> None:
    """The overflow bounds are inclusive: exactly 2**61 passes for each algorithm."""
    assert Limit("s", SLIDING, 2**61 // 1000, 1).limit == 2**61 // 1000
    assert Limit("g", GCRA, 1, 1, burst=2**61 // 1000 - 1).burst == 2**61 // 1000 - 1
    assert Limit("f", FIXED, 2**61, 1).limit == 2**61


def test_a_policy_keeps_its_limits_in_order() -> None:
    """A policy is the ordered tuple of its limits, whatever sequence it was given."""
    limits = [Limit("burst", FIXED, 10, 1), Limit("daily", GCRA, 1000, 86400, burst=5)]
    policy = Policy(tuple(limits))
    assert policy.limits == tuple(limits)
    assert len(policy) == 2


@pytest.mark.parametrize("count", [0, MAX_LIMITS + 1])
def test_a_policy_has_one_to_eight_limits(count: int) -> None:
    """No limit at all, or more than eight, is refused."""
    limits = tuple(Limit(f"l{i}", FIXED, 1, 1) for i in range(count))
    with pytest.raises(ValueError, match="1 to 8"):
        Policy(limits)
    assert len(Policy(tuple(Limit(f"l{i}", FIXED, 1, 1) for i in range(MAX_LIMITS)))) == 8


def test_a_policy_refuses_two_limits_of_one_name() -> None:
    """Limit names are unique within a policy (the headers and metrics name them)."""
    with pytest.raises(ValueError, match="unique"):
        Policy((Limit("a", FIXED, 1, 1), Limit("a", GCRA, 1, 1)))


def test_a_policy_needs_an_enforced_limit() -> None:
    """A policy of shadow limits only is refused: some limit must be able to deny."""
    with pytest.raises(ValueError, match="enforced"):
        Policy((Limit("a", FIXED, 1, 1, shadow=True),))
    assert (
        Policy((Limit("a", FIXED, 1, 1, shadow=True), Limit("b", FIXED, 1, 1))).limits[1].enforced
    )
