"""Reads the combined rule's shared vectors (also read by PolicyRuleTest.java):
``policy.csv`` (one request each) and ``policy_batch.csv`` (several at one instant),
and the refund rule's ``refund.csv`` (one admission given back, :func:`load_refund`).

A row holds a whole policy and one state per limit, so three columns pack lists:

- ``limits``: the limits in policy order, separated by ``|``; each is
  ``name;algorithm;limit;window_seconds;alignment;burst;shadow``, with ``alignment``
  ``clock`` or ``first_request`` for a ``fixed_window`` and ``-`` otherwise, ``burst`` 0
  except for ``gcra``, ``shadow`` 1 or 0. Example:
  ``burst;fixed_window;10;1;clock;0;0|daily;fixed_window;1000;86400;clock;0;0``.
- ``states`` and ``new_states``: one per limit, separated by ``|``; ``-`` for none,
  otherwise the state's numbers separated by ``;``, by the limit's algorithm:
  ``window_start_ms;count`` (fixed), ``window_start_ms;count;previous_count`` (sliding),
  ``tat_ms;tat_fraction`` (gcra).
- ``decisions``: one per limit, separated by ``|``, each
  ``allowed;remaining;reset_after_ms;retry_after_ms;reason`` (its ``limit`` is the spec's).

Single numbers: ``denied_by`` and ``closest`` are limit indices from 0 (``denied_by`` -1
when admitted); ``shadow_denied`` is indices separated by spaces, ``-`` for none; a
``retry_after_ms`` of -1 is none. In ``policy_batch.csv`` the per-request columns
(``costs``, ``allowed``, ``reasons``, ``denied_by``, ``closest``, ``retry_after_ms``)
hold one number per request separated by spaces, and ``new_states`` is the final one.
"""

from __future__ import annotations

from typing import NamedTuple

from limiter.gcra import GcraState
from limiter.policy import Algorithm, Limit, Policy
from limiter.policy_rule import LimitState, PolicyDecision
from limiter.rule import Alignment, Decision, Reason, WindowState
from limiter.sliding_window import SlidingWindowState
from tests.vectors.algorithms import numbers, optional_ms, vector_rows


def parse_policy(field: str) -> Policy:
    limits = []
    for spec in field.split("|"):
        name, algorithm, limit, window, alignment, burst, shadow = spec.split(";")
        limits.append(
            Limit(
                name,
                Algorithm(algorithm),
                int(limit),
                int(window),
                None if alignment == "-" else Alignment(alignment),
                int(burst),
                shadow == "1",
            )
        )
    return Policy(tuple(limits))


def _state(algorithm: Algorithm, field: str) -> LimitState | None:
    if field == "-":
        return None
    numbers = [int(value) for value in field.split(";")]
    if algorithm is Algorithm.FIXED_WINDOW:
        return WindowState(*numbers)
    if algorithm is Algorithm.SLIDING_WINDOW:
        return SlidingWindowState(*numbers)
    return GcraState(*numbers)


def parse_states(policy: Policy, field: str) -> tuple[LimitState | None, ...]:
    fields = field.split("|")
    return tuple(_state(limit.algorithm, f) for limit, f in zip(policy.limits, fields, strict=True))


def _decisions(policy: Policy, field: str) -> tuple[Decision, ...]:
    decisions = []
    for limit, spec in zip(policy.limits, field.split("|"), strict=True):
        allowed, remaining, reset, retry, reason = (int(v) for v in spec.split(";"))
        decisions.append(
            Decision(
                bool(allowed), limit.limit, remaining, reset, Reason(reason), optional_ms(retry)
            )
        )
    return tuple(decisions)


class PolicyVector(NamedTuple):
    name: str
    policy: Policy
    states: tuple[LimitState | None, ...]
    now_ms: int
    cost: int
    expected_states: tuple[LimitState | None, ...]
    expected: PolicyDecision


def load_policy() -> list[PolicyVector]:
    """``policy.csv``: one request against a whole policy."""
    vectors = []
    for row in vector_rows("policy.csv"):
        policy = parse_policy(row["limits"])
        denied_by = int(row["denied_by"])
        shadow = () if row["shadow_denied"] == "-" else tuple(numbers(row["shadow_denied"]))
        vectors.append(
            PolicyVector(
                row["name"],
                policy,
                parse_states(policy, row["states"]),
                int(row["now_ms"]),
                int(row["cost"]),
                parse_states(policy, row["new_states"]),
                PolicyDecision(
                    row["allowed"] == "1",
                    Reason(int(row["reason"])),
                    _decisions(policy, row["decisions"]),
                    None if denied_by == -1 else denied_by,
                    shadow,
                    int(row["closest"]),
                    optional_ms(int(row["retry_after_ms"])),
                ),
            )
        )
    return vectors


class PolicyBatchVector(NamedTuple):
    name: str
    policy: Policy
    states: tuple[LimitState | None, ...]
    now_ms: int
    costs: list[int]
    expected_states: tuple[LimitState | None, ...]
    #: Per request: allowed, reason, denied_by, closest, retry_after_ms.
    expected: list[tuple[bool, Reason, int | None, int, int | None]]


def load_policy_batch() -> list[PolicyBatchVector]:
    """``policy_batch.csv``: several requests of one client at one instant."""
    vectors = []
    for row in vector_rows("policy_batch.csv"):
        policy = parse_policy(row["limits"])
        expected = [
            (bool(allowed), Reason(reason), optional_ms(denied_by), closest, optional_ms(retry))
            for allowed, reason, denied_by, closest, retry in zip(
                numbers(row["allowed"]),
                numbers(row["reasons"]),
                numbers(row["denied_by"]),
                numbers(row["closest"]),
                numbers(row["retry_after_ms"]),
                strict=True,
            )
        ]
        vectors.append(
            PolicyBatchVector(
                row["name"],
                policy,
                parse_states(policy, row["states"]),
                int(row["now_ms"]),
                numbers(row["costs"]),
                parse_states(policy, row["new_states"]),
                expected,
            )
        )
    return vectors


class RefundVector(NamedTuple):
    name: str
    policy: Policy
    states: tuple[LimitState | None, ...]
    now_ms: int
    cost: int
    counted: tuple[int, ...]
    sent_ms: int
    expected_states: tuple[LimitState | None, ...]


def load_refund() -> list[RefundVector]:
    """``refund.csv``: one admission given back. Columns as in ``policy.csv``, plus
    ``counted`` (the limits that counted the admission: indices separated by spaces, ``-``
    for none) and ``sent_ms`` (no later than when the admission was applied)."""
    vectors = []
    for row in vector_rows("refund.csv"):
        policy = parse_policy(row["limits"])
        vectors.append(
            RefundVector(
                row["name"],
                policy,
                parse_states(policy, row["states"]),
                int(row["now_ms"]),
                int(row["cost"]),
                () if row["counted"] == "-" else tuple(numbers(row["counted"])),
                int(row["sent_ms"]),
                parse_states(policy, row["new_states"]),
            )
        )
    return vectors
