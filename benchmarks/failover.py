"""The failover section: partitions moving under a flood through nginx, with a million
windows in the entry processor's shards.

Run last on the benchmark stack, because it kills a member: 3 replicas of the default
strategy (``entry_processor``) with the service's defaults (failure mode ``open``, a
decision timeout of 1 s) and the shard layout of ``RATELIMIT_COUNTER_SHARDS`` (the
service's default, one entry, unless set), behind nginx. Then:

1. ``--failover-windows`` windows are opened in process on the replicas' counters map,
   each at its limit of 1 (so a window lost in a move would admit its client again);
2. ``--failover-clients`` clients are created through the API, with a limit no flood
   reaches (:data:`FLOOD_LIMIT`): every flood request is a cluster call, not the deny
   cache's answer;
3. ``--failover-connections`` connections flood them through nginx; after
   ``--failover-calm-seconds`` (3) the owner of most shard entries is SIGKILLed; once the
   cluster has dropped it and every partition has a live owner, the flood goes on as long
   again, then a new member starts on its port and the flood goes on until it owns
   partitions and as long again;
4. each flood client's stored count is read (``GET /bucket/{id}``), and every opened
   window is asked once more by a new limiter (no deny cache).

What it reports: answers by kind (admitted, failed open, contended, errors), the slowest
answer and the 99th percentile, the time from the kill until the member was dropped and
until every partition had a live owner, from the start of the new member until it owned
partitions, when the first and last undecided answers were sent; and the exactness of it
all: admissions not stored (each would over-admit a client at its limit), stored counts
above the admissions that no undecided answer explains (counted twice), and opened
windows admitted again. Any of the three above 0, an answer failed open (two members
answer throughout: the failure mode is for a cluster that cannot be reached), or an
answer slower than the decision timeout plus 1 s, marks the report FAILED.

Why a flood through nginx and windows in process: the flood is what a member's death
meets in production (replicas, their lanes, the failure mode), and a million registered
clients would measure the registry, not the moves.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from api.settings import Settings
from benchmarks.clients import create_clients
from benchmarks.stack import ADMIN, ADMIN_TOKEN, REPLICAS
from benchmarks.stats import load_now
from benchmarks.tools.memory import client_id
from limiter import Alignment, connect, create_strategy
from stack import Stack

__all__ = ["markdown", "problems", "run"]

#: The flood clients' limit: above anything a flood sends one client.
FLOOD_LIMIT = 10**6
#: The opened windows' length; they open with their first request (a clock-aligned hour
#: could end during the section, and every window asked again would then admit).
WINDOW_SECONDS = 3600
#: The longest wait for one step of the cluster (a member dropped, partitions owned).
STEP_DEADLINE_SECONDS = 120.0
OPEN_TASKS = 1024


@dataclasses.dataclass
class Answer:
    """One flood request: when it was sent (seconds since the flood began), how long it
    took, and what it was."""

    client: str
    sent: float
    took: float
    kind: str


def kind_of(status: int, body: bytes, degraded: bool) -> str:
    """What a flood answer was: only ``admitted`` and ``over_limit`` are decisions."""
    if status == 200:
        return "failed_open" if degraded else "admitted"
    if status == 429:
        return "contended" if b"too busy" in body else "over_limit"
    if status == 503:
        return "failed_closed"
    return "error"


class Flood:
    """Connections sending requests of random flood clients through nginx until stopped."""

    def __init__(self, base: str, ids: list[str], connections: int) -> None:
        self.base = base
        self.ids = ids
        self.connections = connections
        self.answers: list[Answer] = []
        self.started = time.monotonic()
        self.running = True

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await asyncio.gather(
                *(self._connection(http, seed) for seed in range(self.connections))
            )

    async def _connection(self, http: aiohttp.ClientSession, seed: int) -> None:
        draw = random.Random(seed)
        while self.running:
            client = draw.choice(self.ids)
            sent = time.monotonic()
            try:
                async with http.get(f"{self.base}/example", headers={"X-Api-Id": client}) as r:
                    body = await r.read()
                    kind = kind_of(r.status, body, "X-RateLimit-Degraded" in r.headers)
            except (TimeoutError, aiohttp.ClientError):
                kind = "error"
            done = time.monotonic()
            self.answers.append(Answer(client, sent - self.started, done - sent, kind))

    def since(self, instant: float) -> float:
        """``instant`` (``time.monotonic``) in the flood's seconds."""
        return instant - self.started


async def _ask_each(limiter: Any, run_id: str, count: int) -> int:
    """One request for each of the ``count`` windows (limit 1): how many were admitted
    (all of them when they open, none when they are asked again)."""
    pending = iter(range(count))
    admitted = 0

    async def worker() -> None:
        nonlocal admitted
        for i in pending:
            decision = await limiter.decide(
                client_id(run_id, i), 1, WINDOW_SECONDS, alignment=Alignment.FIRST_REQUEST
            )
            admitted += decision.allowed

    await asyncio.gather(*(worker() for _ in range(OPEN_TASKS)))
    return admitted


async def _used(base: str, ids: list[str]) -> dict[str, int]:
    """Each client's stored count, as ``GET /bucket/{id}`` shows it."""
    async with aiohttp.ClientSession(base_url=base, headers=ADMIN) as http:

        async def used(client: str) -> int:
            async with http.get(f"/bucket/{client}") as response:
                response.raise_for_status()
                return int((await response.json())["usage"]["used"])

        counts = await asyncio.gather(*(used(c) for c in ids))
    return dict(zip(ids, counts, strict=True))


async def _wait(what: str, check: Callable[[], bool]) -> float:
    """Polls ``check`` (every 0.1 s, the flood running meanwhile) until true: the seconds
    it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > STEP_DEADLINE_SECONDS:
            raise RuntimeError(f"timed out after {STEP_DEADLINE_SECONDS:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def run(
    stack: Stack,
    options: Mapping[str, Any],
    progress: Callable[[str], None],
    running: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The section on a started cluster of ``stack``; ``options``: ``windows``,
    ``clients``, ``connections``, ``calm_seconds``. ``running``: the strategy and counters
    map of replicas already up (the suite's HTTP parts'), used as they are when they run
    ``entry_processor`` (their settings are the same environment's); otherwise the
    replicas (and nginx) are started here."""
    shards = int(os.environ.get("RATELIMIT_COUNTER_SHARDS", "1"))
    if "nginx" not in stack.running():
        stack.start_parts([stack.demo_app_part(), stack.nginx_part(REPLICAS)])
    replicas = [stack.replica_name(i) for i in range(REPLICAS)]
    if running and running[0] == "entry_processor" and all(map(stack.pid_of, replicas)):
        counters_map = running[1]
    else:
        counters_map = f"ratelimit.counters.failover-{uuid.uuid4().hex[:6]}"
        stack.stop(replicas)
        stack.start_replicas(
            REPLICAS,
            {
                "RATELIMIT_STRATEGY": "entry_processor",
                "RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
                "RATELIMIT_COUNTERS_MAP": counters_map,
                "RATELIMIT_COUNTER_SHARDS": str(shards),
            },
        )
    return asyncio.run(_run(stack, options, progress, shards, counters_map))


async def _run(
    stack: Stack,
    options: Mapping[str, Any],
    progress: Callable[[str], None],
    shards: int,
    counters_map: str,
) -> dict[str, Any]:
    base = f"http://127.0.0.1:{stack.nginx_port}"
    members = stack.members
    settings = Settings.from_env(
        hazelcast_members=",".join(stack.member_addresses(members)),
        hazelcast_cluster_name=stack.cluster_name,
        decision_timeout_seconds=30.0,
        lock_wait_seconds=25.0,
        lock_lease_seconds=40.0,
        expiry_grace_seconds=31.0,
        counters_map=counters_map,
        counter_shards=shards,
    )
    windows, run_id = int(options["windows"]), uuid.uuid4().hex[:8]
    link = await connect(settings)
    figures: dict[str, Any] = {
        "windows": windows,
        "shards": shards,
        # The replicas' (they read the same environment).
        "decision_timeout_seconds": Settings.from_env().decision_timeout_seconds,
    }
    try:
        counters = await link.get_map(counters_map)
        opener = create_strategy(settings, counters, name="entry_processor")
        started = time.monotonic()
        opened = await _ask_each(opener, run_id, windows)
        await opener.close()
        if opened != windows:
            raise RuntimeError(f"{windows - opened} windows were denied their first request")
        figures["opened_in_seconds"] = time.monotonic() - started
        progress(f"failover: {windows} windows opened in {figures['opened_in_seconds']:.0f}s")
        ids = await create_clients(base, int(options["clients"]), FLOOD_LIMIT)
        flood = Flood(base, ids, int(options["connections"]))
        flooding = asyncio.ensure_future(flood.run())
        try:
            calm = float(options["calm_seconds"])
            figures.update(await _kill_and_join(stack, link, flood, shards, calm, progress))
        finally:
            flood.running = False
            await flooding
        used = await _used(base, ids)
        checker = create_strategy(settings, counters, name="entry_processor")
        started = time.monotonic()
        figures["admitted_again"] = await _ask_each(checker, run_id, windows)
        figures["asked_again_in_seconds"] = time.monotonic() - started
        await checker.close()
    finally:
        await link.close()
    figures.update(summarise(flood.answers, used))
    figures["load_average"] = load_now()
    return figures


async def _kill_and_join(
    stack: Stack,
    link: Any,
    flood: Flood,
    shards: int,
    calm: float,
    progress: Callable[[str], None],
) -> dict[str, float]:
    """The kill and the join during the flood; when each step happened."""
    client = link.client
    members = stack.members
    partitions = client.partition_service

    def live() -> dict[Any, str]:
        return {
            m.uuid: f"{m.address.host}:{m.address.port}"
            for m in client.cluster_service.get_members()
        }

    def owners() -> collections.Counter[str | None]:
        alive = live()
        return collections.Counter(
            alive.get(partitions.get_partition_owner(p))
            for p in range(partitions.get_partition_count())
        )

    await asyncio.sleep(calm)
    shard_partitions = [
        await partitions.get_partition_id(f"shard-{i}-of-{shards}") for i in range(shards)
    ]
    by_owner = collections.Counter(
        live().get(partitions.get_partition_owner(p)) for p in shard_partitions
    )
    addresses = stack.member_addresses(members)
    victim = max(range(members), key=lambda i: by_owner[addresses[i]])
    killed = time.monotonic()
    stack.kill(stack.member_name(victim))
    dropped = await _wait("the cluster to drop the member", lambda: len(live()) == members - 1)
    owned = await _wait("every partition owned by a live member", lambda: None not in owners())
    progress(
        f"failover: member {victim + 1} (owner of {by_owner[addresses[victim]]} of {shards} "
        f"shard entries) dropped {dropped:.1f}s after the kill, every partition owned "
        f"after {dropped + owned:.1f}s"
    )
    await asyncio.sleep(calm)
    joining = time.monotonic()
    await asyncio.to_thread(stack.start_member, victim, members)
    joined = time.monotonic() - joining
    taken = await _wait("the new member to own partitions", lambda: len(owners()) == members)
    progress(
        f"failover: new member joined {joined:.1f}s after its start, owned partitions "
        f"{joined + taken:.1f}s after it"
    )
    await asyncio.sleep(calm)
    return {
        "killed_at": flood.since(killed),
        "dropped_after_seconds": dropped,
        "owned_after_seconds": dropped + owned,
        "started_at": flood.since(joining),
        "joined_after_seconds": joined,
        "taking_partitions_after_seconds": joined + taken,
        "flood_seconds": flood.since(time.monotonic()),
    }


def summarise(answers: list[Answer], used: Mapping[str, int]) -> dict[str, Any]:
    """Answers by kind, the slowest, and the flood clients' exactness."""
    kinds = collections.Counter(a.kind for a in answers)
    admitted = collections.Counter(a.client for a in answers if a.kind == "admitted")
    undecided = collections.Counter(
        a.client for a in answers if a.kind not in ("admitted", "over_limit")
    )
    not_stored = sum(max(0, admitted[c] - n) for c, n in used.items())
    unexplained = sum(max(0, n - admitted[c] - undecided[c]) for c, n in used.items())
    stored_above = sum(max(0, n - admitted[c]) for c, n in used.items())
    late = sorted(a.took for a in answers)
    undecided_at = [a.sent for a in answers if a.kind not in ("admitted", "over_limit")]
    return {
        "answers": len(answers),
        "kinds": dict(kinds),
        "slowest_seconds": late[-1] if late else 0.0,
        "p99_ms": 1000 * late[int(0.99 * (len(late) - 1))] if late else 0.0,
        "admitted_not_stored": not_stored,
        "stored_above_admitted": stored_above,
        "stored_above_unexplained": unexplained,
        "undecided_first_at": min(undecided_at) if undecided_at else None,
        "undecided_last_at": max(undecided_at) if undecided_at else None,
    }


def problems(section: Mapping[str, Any] | None) -> list[str]:
    """What makes the section a failure: a count lost or doubled, a window lost, an answer
    failed open, a slow answer."""
    if not section:
        return []
    found = []
    for key in ("admitted_not_stored", "stored_above_unexplained", "admitted_again"):
        if section[key]:
            found.append(f"failover: {key.replace('_', ' ')} {section[key]}")
    # Two members answered throughout: the failure mode was never the service's to use.
    if section["kinds"].get("failed_open", 0):
        found.append(f"failover: {section['kinds']['failed_open']} answers failed open")
    if section["slowest_seconds"] > section["decision_timeout_seconds"] + 1.0:
        found.append(
            f"failover: an answer took {section['slowest_seconds']:.2f}s, more than the "
            f"decision timeout + 1 s"
        )
    return found


def markdown(section: Mapping[str, Any] | None) -> list[str]:
    """The report's lines for the section (none when it was not run)."""
    if not section:
        return []
    kinds = section["kinds"]
    shown = ", ".join(f"{k.replace('_', ' ')} {n:,}" for k, n in sorted(kinds.items()))
    undecided = (
        f"from {section['undecided_first_at']:.1f} s to {section['undecided_last_at']:.1f} s"
        if section["undecided_first_at"] is not None
        else "none"
    )
    return [
        f"## Failover: a member killed and a new one started under a flood, "
        f"{section['windows']:,} windows ({section['shards']} shard entries)",
        "",
        f"- flood through nginx: {section['answers']:,} answers in "
        f"{section['flood_seconds']:.0f} s ({shown}); slowest "
        f"**{section['slowest_seconds']:.2f} s**, p99 {section['p99_ms']:.0f} ms",
        f"- kill at {section['killed_at']:.1f} s: member dropped after "
        f"{section['dropped_after_seconds']:.1f} s, every partition with a live owner after "
        f"**{section['owned_after_seconds']:.1f} s**; new member started at "
        f"{section['started_at']:.1f} s, joined after {section['joined_after_seconds']:.1f} s, "
        f"owned partitions after {section['taking_partitions_after_seconds']:.1f} s",
        f"- undecided answers (contended, failed open or closed, errors): {undecided}",
        f"- admissions not stored: **{section['admitted_not_stored']}**; stored above the "
        f"admissions: {section['stored_above_admitted']} (unexplained by undecided answers: "
        f"**{section['stored_above_unexplained']}**); opened windows admitted again: "
        f"**{section['admitted_again']}** of {section['windows']:,}",
        f"- windows opened in {section['opened_in_seconds']:.0f} s, asked again in "
        f"{section['asked_again_in_seconds']:.0f} s; load average at the end "
        f"{section['load_average']:.2f}",
        "",
    ]
