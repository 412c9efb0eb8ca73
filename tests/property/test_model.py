"""Model-based: every strategy, driven step by step on the real cluster, gives exactly
the decisions of the pure rule, across window edges, costs, limits, clients and both window
alignments (one client starts clock-aligned, the other first_request, and either may be
switched as a PATCH would)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from api.settings import Settings
from limiter import STRATEGY_NAMES, Alignment, ClusterLink, WindowState, decide
from tests.loop import LoopThread
from tests.property.contenders import build


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
        self.model: dict[tuple[str, int], WindowState] = {}
        self.alignments = {"alpha": Alignment.CLOCK, "beta": Alignment.FIRST_REQUEST}

    @initialize(start=st.integers(1_700_000_000_000, 1_900_000_000_000))
    def set_clock(self, start: int) -> None:
        self.now_ms = start

    @rule(advance_ms=st.one_of(st.integers(0, 2_000), st.integers(0, 130_000)))
    def time_passes(self, advance_ms: int) -> None:
        self.now_ms += advance_ms

    @rule(client=st.sampled_from(["alpha", "beta"]), alignment=st.sampled_from(Alignment))
    def realign(self, client: str, alignment: Alignment) -> None:
        self.alignments[client] = alignment

    @rule(
        client=st.sampled_from(["alpha", "beta"]),
        cost=st.integers(1, 6),
        limit=st.integers(1, 8),
        window=st.sampled_from([60, 120]),
    )
    def request(self, client: str, cost: int, limit: int, window: int) -> None:
        alignment = self.alignments[client]
        stored = self.model.get((client, window))
        expected_state, expected = decide(stored, self.now_ms, cost, limit, window, alignment)
        actual = self.loop.run(
            self.strategy.decide(client, limit, window, cost, alignment=alignment)
        )
        assert actual == expected
        if expected.allowed:  # as in every strategy, only an admission is stored
            self.model[(client, window)] = expected_state

    def teardown(self) -> None:
        self.loop.run(self.strategy.close())
        self.loop.run(self.counters.destroy())


@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
def test_strategy_matches_the_rule(
    strategy_name: str, loop: LoopThread, link: ClusterLink, base_settings: Settings
) -> None:
    """Each strategy's every decision equals the pure rule's, step by step."""
    machine = type(
        f"{strategy_name}Machine",
        (StrategyMachine,),
        {"strategy_name": strategy_name, "loop": loop, "link": link, "settings": base_settings},
    )
    run_state_machine_as_test(machine, settings=settings(stateful_step_count=40))
