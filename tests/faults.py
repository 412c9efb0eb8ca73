"""Tools of the fault tests: an open-loop load through nginx, what each answer was, the
figures of a fault (errors, longest gap, recovery), and the cluster's partition table as
a client sees it (who owns a key, who owns how much).

Only loopback, and every wait bounded: the load stops at its own deadline whatever
happens, each request at its timeout, and each poll at its deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp
from hazelcast.client import HazelcastClient
from prometheus_client.parser import text_string_to_metric_families

from api.headers import DEGRADED
from stack import Stack

#: Longest one request through nginx may take before it counts as an error (nginx's own
#: proxy_read_timeout is 10 s, so nginx answers first).
REQUEST_TIMEOUT_SECONDS = 15.0


class Kind(enum.Enum):
    """What one answer of the guarded route was."""

    ADMITTED = "admitted"  # 200, decided
    FAIL_OPEN = "fail_open"  # 200 marked X-RateLimit-Degraded: no decision, admitted
    OVER_LIMIT = "over_limit"  # 429, the client's limit
    CONTENDED = "contended"  # 429, the key too busy to decide in time: no decision
    FAIL_CLOSED = "fail_closed"  # 503 from the API: no decision from the cluster
    ERROR = "error"  # anything else: nginx found no replica, a transport error, ...


DECIDED = frozenset({Kind.ADMITTED, Kind.OVER_LIMIT})


def classify(status: int, body: bytes, degraded: bool = False) -> Kind:
    if status == 200:
        return Kind.FAIL_OPEN if degraded else Kind.ADMITTED
    if status == 429:
        return Kind.CONTENDED if b"too busy" in body else Kind.OVER_LIMIT
    if status == 503 and b"no rate-limit decision" in body:
        return Kind.FAIL_CLOSED
    return Kind.ERROR


@dataclasses.dataclass(frozen=True)
class Shot:
    """One request of one client: when it was sent and answered (``time.monotonic``)."""

    client: str
    sent: float
    done: float
    status: int  # 0: no HTTP answer at all
    kind: Kind

    @property
    def decided(self) -> bool:
        return self.kind in DECIDED

    @property
    def elapsed(self) -> float:
        return self.done - self.sent


def http_session(connections: int = 100) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
    )


async def shoot(http: aiohttp.ClientSession, url: str, client_id: str) -> Shot:
    """One ``GET /example`` of ``client_id``."""
    sent = time.monotonic()
    try:
        async with http.get(f"{url}/example", headers={"X-Api-Id": client_id}) as response:
            body = await response.read()
            status = response.status
            degraded = DEGRADED in response.headers
    except (aiohttp.ClientError, TimeoutError):
        return Shot(client_id, sent, time.monotonic(), 0, Kind.ERROR)
    return Shot(client_id, sent, time.monotonic(), status, classify(status, body, degraded))


async def spend(http: aiohttp.ClientSession, url: str, client_id: str, count: int) -> list[Shot]:
    """``count`` requests of one client, one after the other."""
    return [await shoot(http, url, client_id) for _ in range(count)]


async def spend_until_denied(
    http: aiohttp.ClientSession, url: str, client_id: str, cap: int
) -> list[Shot]:
    """Requests of one client, one after the other (so its key never sees contention),
    until one is over the limit or is not decided at all; at most ``cap``."""
    shots: list[Shot] = []
    while len(shots) < cap:
        shot = await shoot(http, url, client_id)
        shots.append(shot)
        if shot.kind is not Kind.ADMITTED:
            break
    return shots


class SteadyLoad:
    """Open-loop load: every client sends one request each ``1 / rate`` seconds (clients
    staggered over the interval), whether or not the earlier ones were answered, so a
    stalled key shows as a gap rather than slowing the load down. Runs until
    :meth:`stop` or ``max_seconds``; :attr:`shots` holds every answered request."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        client_ids: Sequence[str],
        rate_per_client: float,
        max_seconds: float,
    ) -> None:
        self.http = http
        self.url = url
        self.client_ids = list(client_ids)
        self.interval = 1.0 / rate_per_client
        self.max_seconds = max_seconds
        self.shots: list[Shot] = []
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        stagger = self.interval / len(self.client_ids)
        try:
            await asyncio.gather(
                *(
                    self._client(loop, started + i * stagger, client_id)
                    for i, client_id in enumerate(self.client_ids)
                )
            )
        finally:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _client(self, loop: asyncio.AbstractEventLoop, first: float, client_id: str) -> None:
        tick = 0
        while True:
            at = first + tick * self.interval
            if at - first > self.max_seconds:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, at - loop.time()))
            if self._stop.is_set():
                return
            task = loop.create_task(self._record(client_id))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            tick += 1

    async def _record(self, client_id: str) -> None:
        self.shots.append(await shoot(self.http, self.url, client_id))


@dataclasses.dataclass(frozen=True)
class Figures:
    """What a stretch of load saw."""

    requests: int
    #: Answers that were no decision, by kind (contended, fail_closed, error).
    errors: dict[Kind, int]
    #: Longest time one client waited between two decided answers.
    longest_gap: float
    #: Slowest single answer.
    slowest: float

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def of(cls, shots: Sequence[Shot]) -> Figures:
        errors = collections.Counter(shot.kind for shot in shots if not shot.decided)
        return cls(
            requests=len(shots),
            errors=dict(errors),
            longest_gap=longest_gap(shots),
            slowest=max((shot.elapsed for shot in shots), default=0.0),
        )

    def describe(self) -> str:
        kinds = ", ".join(f"{kind.value} {n}" for kind, n in sorted(self.errors.items(), key=str))
        return (
            f"{self.requests} requests, errors {self.error_count}"
            + (f" ({kinds})" if kinds else "")
            + f", longest gap {self.longest_gap:.2f}s, slowest answer {self.slowest:.2f}s"
        )


async def undecided_causes(
    http: aiohttp.ClientSession, ports: Iterable[int]
) -> collections.Counter[str]:
    """Why the replicas on ``ports`` gave no decision so far, summed from their /metrics:
    the contended causes (deadline, lock_busy, cas_exhausted, ...) and the backend error
    kinds (unavailable, timeout). Subtract two of these to see one stretch of load."""
    found: collections.Counter[str] = collections.Counter()
    for port in ports:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "ratelimit_contended_total":
                    found[sample.labels["cause"]] += int(sample.value)
                elif sample.name == "ratelimit_backend_errors_total":
                    found[sample.labels["kind"]] += int(sample.value)
    return found


def longest_gap(shots: Iterable[Shot]) -> float:
    """The longest time between two consecutive decided answers of one client."""
    answered: dict[str, list[float]] = collections.defaultdict(list)
    for shot in shots:
        if shot.decided:
            answered[shot.client].append(shot.done)
    gaps = [
        later - earlier
        for times in answered.values()
        for earlier, later in zip(sorted(times), sorted(times)[1:], strict=False)
    ]
    return max(gaps, default=0.0)


def count(shots: Iterable[Shot], kind: Kind) -> collections.Counter[str]:
    """Per client, how many of ``shots`` were of ``kind``."""
    return collections.Counter(shot.client for shot in shots if shot.kind is kind)


async def until(
    condition: Callable[[], bool],
    deadline_seconds: float,
    what: str,
    detail: Callable[[], str] = lambda: "",
    interval: float = 0.1,
) -> float:
    """Polls ``condition`` without blocking the event loop (the load goes on meanwhile);
    returns the seconds it took, or fails at the deadline naming ``what`` and ``detail()``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > deadline_seconds:
            raise AssertionError(
                f"timed out after {deadline_seconds:.0f}s waiting for {what}{detail()}"
            )
        await asyncio.sleep(interval)
    return time.monotonic() - started


class PartitionView:
    """The cluster's members and partition table, as a smart client of it sees them."""

    def __init__(self, stack: Stack, members: int) -> None:
        self._client = HazelcastClient(
            cluster_name=stack.cluster_name,
            cluster_members=stack.member_addresses(members),
            cluster_connect_timeout=30.0,
            connection_timeout=2.0,
            retry_initial_backoff=0.1,
            retry_multiplier=1.5,
            retry_max_backoff=1.0,
            statistics_enabled=False,
        )

    def members(self) -> dict[Any, str]:
        """Member uuid → ``host:port`` of every member the cluster lists now."""
        return {
            member.uuid: f"{member.address.host}:{member.address.port}"
            for member in self._client.cluster_service.get_members()
        }

    @property
    def partition_count(self) -> int:
        return int(self._client.partition_service.get_partition_count())

    def owner_of(self, key: str) -> str | None:
        """``host:port`` of the member owning ``key``'s partition (None: no live owner)."""
        service = self._client.partition_service
        owner = service.get_partition_owner(service.get_partition_id(key))
        return self.members().get(owner)

    def owned(self) -> collections.Counter[str | None]:
        """Partitions per owning member (None: an owner that is no longer a member)."""
        service = self._client.partition_service
        members = self.members()
        return collections.Counter(
            members.get(service.get_partition_owner(partition))
            for partition in range(self.partition_count)
        )

    def close(self) -> None:
        self._client.shutdown()
