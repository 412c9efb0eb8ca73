"""``GET /example``, the guarded route as in the original service, and ``/decide``, the
same decision for a gateway (nginx ``auth_request``) in front of any other app.

One request: the client's record from the near-cached registry, then one decision from
the configured strategy against the client's whole policy (every limit in one atomic
step: :meth:`limiter.Strategy.decide_policy`), both by one deadline,
``RATELIMIT_DECISION_TIMEOUT_SECONDS`` from the request's arrival (time queued behind
other requests for the same key counts).

A request's cost is its ``X-RateLimit-Cost`` header (:mod:`api.cost`; 1 when absent, a
malformed one is a 400). Cost 0 is a peek: the client's usage in the usual headers,
admitted unless a request of cost 1 would be denied, counted nowhere. A cost above one of
the client's enforced limits can never pass: 429 with reason ``COST_OVER_LIMIT`` and no
``Retry-After`` (see :mod:`api.headers`). A decided request (cost 1 or more, not
contended) also counts the shadow limits that would have denied it and whether it left
its closest limit nearly exhausted (:func:`api.metrics.count_limits`).

A client over a limit, and a client whose key is too busy to decide in time while the
cluster answers (429, reason ``contended``, ``Retry-After: 1``), are denied: load on one
key never turns into admission. Only when the cluster cannot be reached (client
disconnected, or no answer from it at all while the request waited: see
:mod:`limiter.liveness`) does the failure policy decide (``RATELIMIT_FAILURE_MODE``):

- ``open``: 200 as if admitted, marked ``X-RateLimit-Degraded: <kind>``, counted as
  outcome ``fail_open``. A record the replica cannot read is not checked either: any
  well-formed id passes while the cluster is away.
- ``closed``: 503 ``{"error": ...}`` with ``Retry-After`` and the same marker.

Status codes: 200 admitted, 400 a malformed ``X-RateLimit-Cost``, 401 no ``X-Api-Id``,
404 an id no client has (a malformed id is unknown too: the original answers 404 for an
unknown id and so does this), 429 over the limit, 503 fail closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json as json_module
import time
from collections.abc import Iterator

from sanic import Request
from sanic.log import error_logger
from sanic.response import HTTPResponse, empty, json
from sanic_ext.extensions.openapi import openapi

from api.backend import backend_of
from api.cost import COST_HEADER, request_cost
from api.docs import COST_DESCRIPTION, Error, Message, cost_schema
from api.errors import MissingApiId, UnknownClient
from api.headers import DEGRADED, decision_headers, policy_headers
from api.metrics import (
    BACKEND_ERRORS,
    DECISION_SECONDS,
    DECISIONS,
    TALLY,
    count_limits,
    labelled,
)
from limiter import BackendError, PolicyDecision, Reason, cluster_call
from registry import ClientRecord, parse_client_id

__all__ = ["FAIL_CLOSED_RETRY_AFTER_SECONDS", "Verdict", "example", "gateway_decision", "judge"]

HELLO = {"message": "Hello World"}
JSON_TYPE = "application/json"
HELLO_BODY = json_module.dumps(HELLO).encode()
OVER_LIMIT_BODY = json_module.dumps({"error": "rate limit exceeded"}).encode()
CONTENDED_BODY = json_module.dumps({"error": "too busy, retry shortly"}).encode()
COST_OVER_LIMIT_BODY = json_module.dumps(
    {"error": f"{COST_HEADER} above the client's limit: never admitted"}
).encode()
#: Retry-After of a fail-closed 503: the cluster's return cannot be predicted.
FAIL_CLOSED_RETRY_AFTER_SECONDS = 1
#: At most one log line per this many seconds about decisions the cluster did not give.
LOG_EVERY_SECONDS = 10.0
_last_logged = 0.0


@dataclasses.dataclass(slots=True)
class Verdict:
    """What the limiter says of one request: a decision, or the error that kept it from
    deciding (then the failure policy applies). Metrics are counted when it is made."""

    record: ClientRecord | None
    decision: PolicyDecision | None
    error: BackendError | None
    fail_open: bool

    @property
    def admitted(self) -> bool:
        return self.decision.allowed if self.decision is not None else self.fail_open

    def headers(self) -> dict[str, str]:
        if self.decision is not None:
            assert self.record is not None
            return decision_headers(self.record.policy, self.decision)
        assert self.error is not None
        headers = {DEGRADED: self.error.kind}
        if self.record is not None:
            headers.update(policy_headers(self.record.policy))
        if not self.fail_open:
            headers["Retry-After"] = str(FAIL_CLOSED_RETRY_AFTER_SECONDS)
        return headers


async def judge(request: Request) -> Verdict:
    """Looks up the caller and asks the strategy, all within the decision timeout.

    Raises :class:`MissingApiId` and :class:`UnknownClient` for a caller it cannot name.
    """
    backend = backend_of(request)
    raw = request.headers.get("x-api-id", "").strip()
    if not raw:
        raise MissingApiId("missing X-Api-Id header")
    client_id = parse_client_id(raw)
    if client_id is None:
        raise UnknownClient("unknown client id")
    cost = request_cost(request.headers, backend.settings.max_cost)
    strategy = backend.settings.strategy
    started = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + backend.settings.decision_timeout_seconds
    record: ClientRecord | None = None
    try:
        connection = backend.require_connection()
        known, record = connection.registry.remembered(client_id)
        if not known:
            async with cluster_call(deadline):
                record = await connection.registry.fetch(client_id)
        if record is None:
            raise UnknownClient("unknown client id")
        # A cost of 0 is a peek; either raises only a BackendError when the cluster cannot
        # be reached, and keeps to the deadline itself (no timer per request here).
        decision = await connection.strategy.decide_policy(
            client_id, record.policy, cost, deadline=deadline
        )
    except BackendError as failure:
        error = failure
    else:
        TALLY.observe(labelled(DECISION_SECONDS, strategy), time.perf_counter() - started)
        outcome = "allowed" if decision.allowed else "denied"
        if decision.reason == Reason.CONTENDED:
            outcome = "contended"
        elif cost == 0:
            outcome = "peek"
        else:
            count_limits(record.policy, decision, backend.settings.near_limit_share)
        TALLY.inc(labelled(DECISIONS, strategy, outcome))
        return Verdict(record, decision, None, fail_open=False)
    TALLY.observe(labelled(DECISION_SECONDS, strategy), time.perf_counter() - started)
    TALLY.inc(labelled(BACKEND_ERRORS, strategy, error.kind))
    _log_throttled(error)
    fail_open = backend.settings.failure_mode == "open"
    TALLY.inc(labelled(DECISIONS, strategy, "fail_open" if fail_open else "fail_closed"))
    return Verdict(record, None, error, fail_open)


@openapi.summary("The guarded route: admitted or not by the caller's rate limit")
@openapi.tag("guarded")
@openapi.parameter("X-Api-Id", str, "header", required=True, description="the client's id")
@openapi.parameter(
    COST_HEADER, cost_schema(), "header", required=False, description=COST_DESCRIPTION
)
@openapi.response(200, {"application/json": Message}, "admitted (also when failing open)")
@openapi.response(400, {"application/json": Error}, "a malformed X-RateLimit-Cost")
@openapi.response(401, {"application/json": Error}, "no X-Api-Id header")
@openapi.response(404, {"application/json": Error}, "no client has this id")
@openapi.response(
    429,
    {"application/json": Error},
    "over the limit, or the key too busy (see Retry-After); or a cost above the limit",
)
@openapi.response(503, {"application/json": Error}, "cluster unreachable (fail closed)")
async def example(request: Request) -> HTTPResponse:
    verdict = await judge(request)
    if verdict.admitted:
        return GuardedResponse(HELLO_BODY, headers=verdict.headers())
    if verdict.error is not None:
        return json(
            {"error": f"no rate-limit decision available ({verdict.error.kind})"},
            status=503,
            headers=verdict.headers(),
        )
    assert verdict.decision is not None
    if verdict.decision.reason == Reason.CONTENDED:
        return GuardedResponse(CONTENDED_BODY, status=429, headers=verdict.headers())
    if verdict.decision.reason == Reason.COST_OVER_LIMIT:
        return GuardedResponse(COST_OVER_LIMIT_BODY, status=429, headers=verdict.headers())
    return GuardedResponse(OVER_LIMIT_BODY, status=429, headers=verdict.headers())


class GuardedResponse(HTTPResponse):
    """A JSON answer of the guarded route, the hottest response of the service.

    Its body is one of a few fixed byte strings, and every header is built in
    :mod:`api.headers` from integers, fixed names and limit names (which
    :data:`limiter.policy.NAME_PATTERN` keeps to ``[a-z0-9_-]``; Sanic adds its own few,
    also clean), so Sanic's scrub of CR and LF from each header name and value (a third of a
    past-the-limit answer's cost in the handler) has nothing to find and is skipped:
    the headers are only encoded.
    """

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None):
        super().__init__(body, status=status, headers=headers, content_type=JSON_TYPE)

    @property
    def processed_headers(self) -> Iterator[tuple[bytes, bytes]]:
        # Every status it is sent with (200, 429) has a body.
        self.headers.setdefault("content-type", self.content_type)
        return iter([(name.encode(), str(value).encode()) for name, value in self.headers.items()])


@openapi.summary(
    "Decision only, for a gateway (nginx auth_request): counts the request (cost 0: a peek)"
)
@openapi.description(
    "Answers in the vocabulary of nginx `auth_request`, which passes on only 2xx, 401 and "
    "403: 204 admitted; 401 no or unknown `X-Api-Id`; 403 not admitted, with "
    "`X-RateLimit-Degraded` set when that is because there was no decision (fail closed) "
    "and unset when the client is over its limit. Every rate-limit header as on /example. "
    "A malformed `X-RateLimit-Cost` is a 400 naming it in `X-RateLimit-Invalid` (nginx "
    "turns it into the caller's 400)."
)
@openapi.tag("guarded")
@openapi.parameter("X-Api-Id", str, "header", required=True, description="the client's id")
@openapi.parameter(
    COST_HEADER, cost_schema(), "header", required=False, description=COST_DESCRIPTION
)
@openapi.response(204, {}, "admitted")
@openapi.response(400, {"application/json": Error}, "a malformed X-RateLimit-Cost")
@openapi.response(401, {"application/json": Error}, "no X-Api-Id, or no client has this id")
@openapi.response(403, {"application/json": Error}, "over the limit, or no decision (fail closed)")
async def gateway_decision(request: Request) -> HTTPResponse:
    try:
        verdict = await judge(request)
    except (MissingApiId, UnknownClient) as caller:
        return json({"error": str(caller)}, status=401)
    if verdict.admitted:
        return empty(status=204, headers=verdict.headers())
    reason = "rate limit exceeded" if verdict.error is None else "no rate-limit decision"
    return json({"error": reason}, status=403, headers=verdict.headers())


def _log_throttled(error: BackendError) -> None:
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= LOG_EVERY_SECONDS:
        _last_logged = now
        error_logger.warning("no decision from the cluster: %s: %s", error.kind, error)
