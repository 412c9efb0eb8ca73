// Strategy comparison: constant-arrival-rate steps through nginx, one scenario per step.
//
// Each step sends GET /example at a fixed arrival rate for STEP_SECONDS, to its own set of
// fresh clients: iteration i of a step names client i mod N of that step, so every client
// of the step is sent the same number of requests (give or take one), and each client's
// limit is about half of that. The exact expectation is then known from the number of
// requests sent: sum over clients of min(sent to it, limit). Half the requests are
// decisions that write, half are denials (most of them from the replicas' deny caches).
//
// python -m benchmarks (benchmarks/rate_steps.py) creates the clients, writes them to
// CLIENTS_FILE as {"step_<rate>": {"limit": L, "ids": [...]}, ...}, runs this script and
// reads its summary export: per step the p99 latency, the requests, the iterations k6 could
// not start in time (dropped: the system did not keep up), and the answers counted as
// admitted (200), denied (a 429 with Retry-After and RateLimit) or unexpected (anything
// else). The thresholds are there to put each step's submetrics into the export; the
// verdict (held or not) is computed by the caller.
//
// Before the steps, a warm-up (not recorded) sends the first step's rate for
// WARMUP_SECONDS to clients of its own (CLIENTS_FILE's "warm_up"): without it the first
// step paid for k6's, the replicas' and the members' first requests and was not held.
//
// Variables: BASE_URL, CLIENTS_FILE, STEPS (comma-separated rates per second),
// STEP_SECONDS, GAP_SECONDS (pause between steps, so one step's backlog does not spill
// into the next), WARMUP_SECONDS (0: none), MAX_VUS.
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:9999';
const CLIENTS = JSON.parse(open(__ENV.CLIENTS_FILE));
const STEPS = (__ENV.STEPS || '100').split(',').map(Number);
const STEP_SECONDS = Number(__ENV.STEP_SECONDS || '5');
const GAP_SECONDS = Number(__ENV.GAP_SECONDS || '1');
const MAX_VUS = Number(__ENV.MAX_VUS || '300');
const WARMUP_SECONDS = Number(__ENV.WARMUP_SECONDS || '0');
const FIRST_STEP_AT = WARMUP_SECONDS > 0 ? WARMUP_SECONDS + GAP_SECONDS : 0;

const admitted = new Counter('admitted');
const denied = new Counter('denied');
const unexpected = new Counter('unexpected');

function arrivals(rate, seconds, startSeconds) {
  return {
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration: `${seconds}s`,
    startTime: `${startSeconds}s`,
    preAllocatedVUs: Math.min(MAX_VUS, Math.max(5, Math.ceil(rate / 20))),
    maxVUs: MAX_VUS,
    gracefulStop: '10s',
  };
}

const scenarios = {};
const thresholds = {};
if (WARMUP_SECONDS > 0) {
  if (!CLIENTS.warm_up) {
    throw new Error('CLIENTS_FILE has no clients for warm_up');
  }
  scenarios.warm_up = arrivals(STEPS[0], WARMUP_SECONDS, 0);
}
STEPS.forEach((rate, index) => {
  const name = `step_${rate}`;
  if (!CLIENTS[name]) {
    throw new Error(`CLIENTS_FILE has no clients for ${name}`);
  }
  scenarios[name] = arrivals(rate, STEP_SECONDS, FIRST_STEP_AT + index * (STEP_SECONDS + GAP_SECONDS));
  for (const metric of ['admitted', 'denied', 'unexpected', 'http_reqs', 'dropped_iterations']) {
    thresholds[`${metric}{scenario:${name}}`] = ['count>=0'];
  }
  thresholds[`http_req_duration{scenario:${name}}`] = ['p(99)<100'];
});

export const options = {
  scenarios,
  thresholds,
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'p(99.9)', 'max'],
};

function header(response, name) {
  const wanted = name.toLowerCase();
  const key = Object.keys(response.headers).find((k) => k.toLowerCase() === wanted);
  return key === undefined ? undefined : response.headers[key];
}

export default function () {
  const step = CLIENTS[exec.scenario.name];
  const id = step.ids[exec.scenario.iterationInTest % step.ids.length];
  const response = http.get(`${BASE_URL}/example`, {
    headers: { 'X-Api-Id': id },
    timeout: '10s',
  });
  if (response.status === 200) {
    admitted.add(1);
  } else if (
    response.status === 429 &&
    Number(header(response, 'Retry-After')) > 0 &&
    header(response, 'RateLimit') !== undefined
  ) {
    denied.add(1);
  } else {
    unexpected.add(1);
  }
}
