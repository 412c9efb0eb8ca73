// The original service's k6 scenario, made exact, for both window alignments at once.
//
// Each client has a limit of 100 per 60 s and is sent GET /example through nginx at 3 req/s
// for 34 s (102 requests), then at 5 req/s for 10 s (50 requests). k6's arrival-rate
// executor may add an iteration or two, so no threshold depends on the total.
//
// - first_request: the window opens at the client's first request, and all 152+ requests
//   fall within it: exactly 100 are admitted, every other one is a 429.
// - clock: the windows are [kW, (k+1)W) in epoch ms. The client starts 38.1 s before an edge,
//   so the edge falls in the 5 req/s phase midway between two requests, after 102 + 21
//   requests have exhausted the first window: exactly 100 admitted before the edge, and none
//   denied after it (the fresh window admits all of its ~30 requests, at least one).
//
// A 429 must carry Retry-After (seconds > 0) and RateLimit; anything else is `unexpected`.
//
// The start is pinned to an absolute instant: setup() sleeps until START_AT_MS, so k6's own
// start-up time, which varies, never shifts the edge; the scenarios begin when setup returns.
// The edge's placement is itself a threshold: every request tagged `first` left at least
// 50 ms before CLOCK_EDGE_MS, every one tagged `second` at least 50 ms after it.
//
// Run it with `python -m benchmarks.k6` (against `make up`, or `--url`), which creates the
// two clients, pins the start and reads the summary; tests/integration/test_k6.py does the
// same on the test stack. The variables it passes: BASE_URL, FIRST_REQUEST_ID, CLOCK_ID,
// START_AT_MS, CLOCK_EDGE_MS (a minute edge) and CLOCK_START_SECONDS (CLOCK_EDGE_MS minus
// 38.1 s, counted from START_AT_MS). k6 exits 0 when every threshold holds, 99 when one
// fails.
import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

/** Where the edge falls after the clock client's start: in its 5 req/s phase (from 34 s),
 *  midway between the requests at 38.0 s and 38.2 s. */
const EDGE_AFTER_CLOCK_START_MS = 38100;
/** Least distance between a clock request and the edge: the request reaches the API
 *  within it, so the window it is tagged with is the one the API decides in. */
const EDGE_MARGIN_MS = 50;

function required(name) {
  const value = __ENV[name];
  if (value === undefined || value === '') {
    throw new Error(`${name} is required (see the header of this file)`);
  }
  return value;
}

function requiredNumber(name) {
  const value = Number(required(name));
  if (!Number.isFinite(value)) {
    throw new Error(`${name} must be a number, not ${__ENV[name]}`);
  }
  return value;
}

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:9999';
const FIRST_REQUEST_ID = required('FIRST_REQUEST_ID');
const CLOCK_ID = required('CLOCK_ID');
const START_AT_MS = requiredNumber('START_AT_MS');
const CLOCK_EDGE_MS = requiredNumber('CLOCK_EDGE_MS');
const CLOCK_START_SECONDS = requiredNumber('CLOCK_START_SECONDS');

// The three times must agree, or the thresholds below would not mean what they say.
const edgeAfterClockStart = CLOCK_EDGE_MS - START_AT_MS - CLOCK_START_SECONDS * 1000;
if (Math.abs(edgeAfterClockStart - EDGE_AFTER_CLOCK_START_MS) > 1) {
  throw new Error(
    `CLOCK_EDGE_MS must be START_AT_MS + CLOCK_START_SECONDS s + 38.1 s, ` +
      `not ${edgeAfterClockStart} ms after the clock client's start`,
  );
}
if (CLOCK_EDGE_MS % 60000 !== 0) {
  throw new Error(`CLOCK_EDGE_MS ${CLOCK_EDGE_MS} is not a 60-s window edge`);
}

const admitted = new Counter('admitted');
const denied = new Counter('denied');
const unexpected = new Counter('unexpected');
const edgeDistance = new Trend('edge_distance_ms');

/** The two phases of one client: 3 req/s for 34 s, then 5 req/s for 10 s. */
function phases(name, exec, startMs) {
  const common = { executor: 'constant-arrival-rate', timeUnit: '1s', exec };
  return {
    [`${name}_steady`]: {
      ...common,
      rate: 3,
      duration: '34s',
      startTime: `${startMs}ms`,
      preAllocatedVUs: 5,
      maxVUs: 20,
    },
    [`${name}_burst`]: {
      ...common,
      rate: 5,
      duration: '10s',
      startTime: `${startMs + 34000}ms`,
      preAllocatedVUs: 5,
      maxVUs: 20,
    },
  };
}

export const options = {
  scenarios: {
    ...phases('first_request', 'firstRequest', 0),
    ...phases('clock', 'clock', Math.round(CLOCK_START_SECONDS * 1000)),
  },
  // setup() waits for START_AT_MS, which the caller sets a few seconds ahead.
  setupTimeout: '60s',
  // Only submetrics with a threshold reach the summary export, hence the `>=1` ones: each
  // holds whatever the total, and makes the count readable.
  thresholds: {
    'admitted{alignment:first_request}': ['count==100'],
    'denied{alignment:first_request}': ['count>=1'],
    'unexpected{alignment:first_request}': ['count==0'],
    'admitted{alignment:clock,window:first}': ['count==100'],
    'denied{alignment:clock,window:first}': ['count>=1'],
    'admitted{alignment:clock,window:second}': ['count>=1'],
    'denied{alignment:clock,window:second}': ['count==0'],
    'unexpected{alignment:clock}': ['count==0'],
    'edge_distance_ms{window:first}': [`max<=-${EDGE_MARGIN_MS}`],
    'edge_distance_ms{window:second}': [`min>=${EDGE_MARGIN_MS}`],
  },
};

export function setup() {
  const wait = START_AT_MS - Date.now();
  if (wait <= 0) {
    throw new Error(`START_AT_MS was ${-wait} ms ago when k6 was ready: set it further ahead`);
  }
  sleep(wait / 1000);
}

function header(response, name) {
  const wanted = name.toLowerCase();
  const key = Object.keys(response.headers).find((k) => k.toLowerCase() === wanted);
  return key === undefined ? undefined : response.headers[key];
}

/** One GET /example, counted as admitted, denied (a well-formed 429) or unexpected. */
function request(id, tags) {
  const response = http.get(`${BASE_URL}/example`, { headers: { 'X-Api-Id': id }, tags });
  if (response.status === 200) {
    admitted.add(1, tags);
  } else if (
    response.status === 429 &&
    Number(header(response, 'Retry-After')) > 0 &&
    header(response, 'RateLimit') !== undefined
  ) {
    denied.add(1, tags);
  } else {
    unexpected.add(1, tags);
  }
}

export function firstRequest() {
  request(FIRST_REQUEST_ID, { alignment: 'first_request' });
}

export function clock() {
  const distance = Date.now() - CLOCK_EDGE_MS;
  const tags = { alignment: 'clock', window: distance < 0 ? 'first' : 'second' };
  edgeDistance.add(distance, tags);
  request(CLOCK_ID, tags);
}
