"""The report's shape: what each part of ``python -m benchmarks`` hands to the report and
the plots, typed once here, so that a field is named the same where it is written and
where it is read. They are dicts (TypedDicts): ``report.json`` is these, as they are.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

__all__ = [
    "Burst",
    "EndToEndRow",
    "InProcess",
    "InProcessRow",
    "K6Original",
    "K6Step",
    "K6Steps",
    "Machine",
    "Options",
    "Policies",
    "PolicyCost",
    "PolicyEndToEnd",
    "PolicyInProcess",
    "PolicyRow",
    "Report",
    "RlsFlood",
    "RlsPart",
    "RlsPeer",
    "RlsRow",
]


class InProcessRow(TypedDict):
    """One contender at one spread and concurrency: medians over rounds."""

    runs: int
    decisions: float
    per_second: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    problems: list[str]
    #: The highest 1-minute load average at the end of its runs.
    load_average: float
    vs_get: float
    vs_set: float
    # A strategy's own (its observer's); the floors have none.
    cluster_ops_per_decision: NotRequired[float]
    cas_attempts_per_decision: NotRequired[float]
    cas_attempts_per_batch: NotRequired[float]
    lock_wait_mean_ms: NotRequired[float]
    lock_wait_p99_ms: NotRequired[float]
    contended: NotRequired[float]


class Burst(TypedDict):
    limit: int
    requests: int
    tasks: int
    problems: dict[str, list[str]]


class InProcess(TypedDict):
    """The in-process part: ``scenarios[spread][contender][concurrency as text]``."""

    seconds_per_run: float
    rounds: int
    concurrency: list[int]
    keys: list[int]
    strategies: list[str]
    burst: Burst
    scenarios: dict[str, dict[str, dict[str, InProcessRow]]]


class EndToEndRow(TypedDict):
    """One strategy's scenario through nginx: medians over rounds."""

    per_second: float
    ratio_to_health: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    statuses: list[dict[int, int]]
    problems: list[str]
    #: The highest 1-minute load average at the end of its runs.
    load_average: float


class K6Step(TypedDict):
    """One constant-arrival-rate step and its verdict."""

    rate: int
    sent: int
    per_second: float
    dropped: int
    admitted: int
    expected: int
    denied: int
    unexpected: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    held: bool
    problems: list[str]
    #: The machine's 1-minute load average at the step's end.
    load_average: float


class K6Steps(TypedDict):
    step_seconds: int
    clients_per_step: int
    warmup_seconds: int
    steps: list[K6Step]
    highest_held: int
    problems: list[str]


class K6Original(TypedDict):
    strategy: str
    exit_code: int
    figures: str
    thresholds: str


class PolicyRow(TypedDict):
    """One policy shape (one limit, or three) on one strategy: medians over rounds."""

    runs: int
    per_second: float
    p50_ms: float
    p99_ms: float
    #: Each round's rate, in round order: how far the median could move.
    rates: list[float]
    problems: list[str]
    #: The highest 1-minute load average at the end of its runs.
    load_average: float
    #: Cluster operations per decision (below 1: batched); end to end, from the replicas'
    #: metrics (none for ``/health``).
    cluster_ops_per_decision: NotRequired[float]
    #: End to end: the rate divided by ``/health``'s in the same round (median).
    ratio_to_health: NotRequired[float]
    #: End to end: client records the replicas read from the cluster, per request.
    registry_reads_per_request: NotRequired[float]


class PolicyCost(TypedDict):
    """One strategy's price of a three-limit policy against a one-limit one."""

    one_limit: PolicyRow
    three_limits: PolicyRow
    #: median(one-limit rate) / median(three-limit rate): 1.2 means 20 % dearer.
    cost_ratio: float
    #: The same ratio in each round, from the two runs of that round.
    round_ratios: list[float]
    #: End to end: ``/health`` on the same replicas, in the same rounds.
    health: NotRequired[PolicyRow]


class PolicyInProcess(TypedDict):
    seconds_per_run: float
    rounds: int
    tasks: int
    keys: int
    strategies: dict[str, PolicyCost]


class PolicyEndToEnd(TypedDict):
    duration_seconds: int
    rounds: int
    connections: int
    clients: int
    strategies: dict[str, PolicyCost]


class Policies(TypedDict):
    """The policies part: a section is None when it was not run."""

    #: The limits of each shape, as ``POST /bucket`` takes them.
    shapes: dict[str, list[dict[str, object]]]
    inprocess: PolicyInProcess | None
    endtoend: PolicyEndToEnd | None


class RlsRow(TypedDict):
    """One load of the rate limit part (a gRPC call, ``/decide``, a request through an
    Envoy): medians over rounds."""

    runs: int
    per_second: float
    #: Each round's rate, in round order.
    rates: list[float]
    p50_ms: float
    p99_ms: float
    problems: list[str]
    #: The highest 1-minute load average at the end of its runs.
    load_average: float
    #: CPU seconds per second of the process under load (a replica, the peer; direct
    #: loads only) and of the load generator (ghz, wrk).
    server_cores: NotRequired[float]
    generator_cores: NotRequired[float]
    #: Through Envoy: the filter's counters and the requests that reached the upstream,
    #: summed over the runs (ok, over_limit, error, failure_mode_allowed,
    #: upstream_requests).
    envoy: NotRequired[dict[str, int]]
    #: Through Envoy: the RLS call's p50 and p99 from cluster ``ratelimit``'s
    #: ``upstream_rq_time`` (whole ms, medians over runs; None: no sample).
    rls_p50_ms: NotRequired[float | None]
    rls_p99_ms: NotRequired[float | None]
    #: Through Envoy, many IPs: distinct keys sent (and, where it can be read, stored).
    keys_sent: NotRequired[int]
    #: Distinct IPs sent over all the runs, the warm-up's included (each run goes on
    #: where the last stopped), and distinct keys the service stored afterwards.
    keys_sent_in_all: NotRequired[int]
    keys_stored: NotRequired[int | None]


class RlsFlood(TypedDict):
    """One flood through one service's Envoy."""

    ip: str
    #: Requests that reached the upstream (Envoy's ``upstream_rq_total``).
    admitted: int
    limit: int
    statuses: dict[int, int]
    #: Envoy's filter counters during the flood.
    envoy: dict[str, int]
    failed: int
    seconds: float
    load_average: float


class RlsPeer(TypedDict):
    """Whether the peer (envoyproxy/ratelimit on Redis) ran, and if not, why."""

    ran: bool
    reason: str


class RlsPart(TypedDict):
    """The rate limit service part: gRPC decisions per replica, Envoy's filter, the peer."""

    seconds_per_run: float
    rounds: int
    connections: int
    ips: int
    generator: str
    config: str
    peer: RlsPeer
    #: By load: ``http_decide_1``, ``http_decide_3``, ``grpc_1``, ``grpc_3`` (one replica
    #: directly), ``peer_grpc_1``, ``peer_grpc_3``.
    decisions: dict[str, RlsRow]
    #: By Envoy and load: ``off_one``, ``ours_one``, ``peer_one``, ``off_ips``, ...
    envoy: dict[str, RlsRow]
    #: Medians of the per-round ratios: ``grpc_1_vs_http`` (one descriptor against
    #: ``/decide`` of a one-limit client), ``grpc_3_vs_http``; ``ours_one_vs_off``,
    #: ``ours_ips_vs_off``, ``peer_*_vs_off``, ``ours_one_vs_peer``, ``ours_ips_vs_peer``.
    ratios: dict[str, float]
    #: Each ratio's per-round values.
    round_ratios: dict[str, list[float]]
    floods: dict[str, list[RlsFlood]]
    problems: list[str]


class Machine(TypedDict):
    """What the figures were measured on."""

    cpus: int | None
    cpu_model: str
    memory_gib: float | None
    os: str
    python: str
    java: str
    hazelcast: str
    hazelcast_python_client: str
    sanic: str
    nginx: str
    wrk: str
    k6: str
    commit: str
    load_average_at_start: str
    load_average_at_end: NotRequired[str]
    #: The 1-minute load average at the start was above the core count.
    busy: bool


class Options(TypedDict):
    """The command's options as parsed (``--out`` as text)."""

    smoke: bool
    out: str
    only: list[str]
    strategies: list[str]
    http_strategies: list[str]
    concurrency: list[int]
    keys: list[int]
    seconds: float
    rounds: int
    connections: int
    duration: int
    e2e_rounds: int
    exact_limit: int
    clients: int
    steps: list[int]
    step_seconds: int
    step_clients: int
    max_vus: int
    original: bool
    policy_seconds: float
    policy_rounds: int
    policy_tasks: int
    policy_keys: int
    policy_clients: int
    scale_keys: int
    scale_small_keys: int
    scale_tasks: int
    scale_seconds: float
    scale_rounds: int
    rls_seconds: int
    rls_rounds: int
    rls_connections: int
    rls_ips: int
    rls_floods: int
    rls_config: str
    peer: bool
    failover_windows: int
    failover_clients: int
    failover_connections: int
    failover_calm_seconds: float


class Report(TypedDict):
    """``report.json``: a section is missing (or None) when it was not run."""

    command: str
    options: Options
    machine: Machine
    stack: dict[str, object]
    started: NotRequired[str]
    finished: NotRequired[str]
    elapsed_seconds: NotRequired[float]
    inprocess: NotRequired[InProcess]
    endtoend: NotRequired[dict[str, dict[str, EndToEndRow]] | None]
    k6_steps: NotRequired[dict[str, K6Steps] | None]
    k6_original: NotRequired[K6Original]
    policies: NotRequired[Policies]
    #: benchmarks.scale: a million windows (its keys are described there).
    scale: NotRequired[dict[str, Any]]
    rls: NotRequired[RlsPart]
    #: benchmarks.failover: a member killed and a new one started under a flood.
    failover: NotRequired[dict[str, Any]]
    failed: NotRequired[list[str]]
