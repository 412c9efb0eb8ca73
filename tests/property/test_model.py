"""Model-based: every strategy, driven step by step on the real cluster, gives exactly
the decisions of the pure policy rule while the clients' limit lists are PATCHed between
requests: limits of every algorithm, costs, window edges and both window alignments, with
limits added, dropped, changed in value or kept (a kept limit, same name, algorithm and
window, keeps its usage; any other starts empty)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from api.settings import Settings
from limiter import (
    STRATEGY_NAMES,
    Algorithm,
    Alignment,
    ClusterLink,
    Limit,
    LimitState,
    Policy,
    Quota,
)
from limiter.policy_rule import decide
from tests.loop import LoopThread
from tests.property.contenders import build

#: Limits a PATCH draws from: few names, so a new list often keeps a limit's slot (same
#: name, algorithm and window) with another value, and often replaces it.
LIMITS = st.one_of(
    st.builds(
        Limit,
        name=st.sampled_from(["default", "burst"]),
        algorithm=st.just(Algorithm.FIXED_WINDOW),
        limit=st.integers(1, 8),
        window_seconds=st.sampled_from([60, 120]),
        alignment=st.sampled_from(list(Alignment)),
        shadow=st.booleans(),
    ),
    st.builds(
        Limit,
        name=st.sampled_from(["burst", "hourly"]),
        algorithm=st.just(Algorithm.SLIDING_WINDOW),
        limit=st.integers(1, 8),
        window_seconds=st.sampled_from([60, 120]),
        shadow=st.booleans(),
    ),
    st.builds(
        Limit,
        name=st.sampled_from(["steady", "burst"]),
        algorithm=st.just(Algorithm.GCRA),
        limit=st.integers(1, 8),
        window_seconds=st.sampled_from([10, 60]),
        burst=st.integers(0, 4),
        shadow=st.booleans(),
    ),
)
POLICIES = (
    st.lists(LIMITS, min_size=1, max_size=4, unique_by=lambda limit: limit.name)
    .filter(lambda limits: any(not limit.shadow for limit in limits))
    .map(Policy)
)


class StrategyMachine(RuleBasedStateMachine):
    """One strategy against the rule; the clock is injected, so no real window is waited out."""

    strategy_name: ClassVar[str]
    loop: ClassVar[LoopThread]
    link: ClassVar[ClusterLink]
    settings: ClassVar[Settings]

    def __init__(self) -> None:
        super().__init__()
        self.now_ms = 0
        self.counters: Any = self.loop.run(
            self.link.get_map(f"ratelimit.counters.{uuid.uuid4().hex}")
        )
        self.strategy = build(self.strategy_name, self.settings, self.counters, lambda: self.now_ms)
        #: What every strategy stores: per client, each limit's state by its slot.
        self.model: dict[str, dict[int, LimitState]] = {}
        self.policies = {
            "alpha": Policy.single(3, 60),
            "beta": Policy.single(2, 120, Alignment.FIRST_REQUEST),
        }

    @initialize(start=st.integers(1_700_000_000_000, 1_900_000_000_000))
    def set_clock(self, start: int) -> None:
        self.now_ms = start

    @rule(advance_ms=st.one_of(st.integers(0, 2_000), st.integers(0, 130_000)))
    def time_passes(self, advance_ms: int) -> None:
        self.now_ms += advance_ms

    @rule(client=st.sampled_from(["alpha", "beta"]), policy=POLICIES)
    def patch(self, client: str, policy: Policy) -> None:
        """A PATCH of the client's limit list: the next request carries the new policy."""
        self.policies[client] = policy

    @rule(client=st.sampled_from(["alpha", "beta"]), cost=st.integers(1, 6))
    def request(self, client: str, cost: int) -> None:
        policy = self.policies[client]
        stored = self.model.get(client, {})
        states = tuple(stored.get(limit.slot) for limit in policy.limits)
        new_states, expected = decide(states, self.now_ms, cost, policy)
        cached = self.strategy.deny_cache.denial(Quota(client, policy), cost, self.now_ms)
        actual = self.loop.run(self.strategy.decide_policy(client, policy, cost))
        if cached is None:
            assert actual == expected
        else:
            # A local denial is the exhausted window's: the same verdict, its own details.
            assert (actual.allowed, actual.reason) == (expected.allowed, expected.reason)
        if expected.allowed:  # as in every strategy, only an admission is stored
            self.model[client] = {
                limit.slot: state
                for limit, state in zip(policy.limits, new_states, strict=True)
                if state is not None
            }

    def teardown(self) -> None:
        self.loop.run(self.strategy.close())
        self.loop.run(self.counters.destroy())


@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
def test_strategy_matches_the_rule(
    strategy_name: str, loop: LoopThread, link: ClusterLink, base_settings: Settings
) -> None:
    """Each strategy's every decision equals the pure policy rule's, step by step, while
    PATCHes change the clients' limit lists."""
    machine = type(
        f"{strategy_name}Machine",
        (StrategyMachine,),
        {"strategy_name": strategy_name, "loop": loop, "link": link, "settings": base_settings},
    )
    run_state_machine_as_test(machine, settings=settings(stateful_step_count=40))
