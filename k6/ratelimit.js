// The original's k6 scenario, made exact: one client with a limit of 100 per hour is sent
// 3 req/s for 34 s (102 requests) and then 5 req/s for 10 s (50 requests), through nginx.
// Exactly 100 must be admitted and every other one answered 429 with Retry-After.
//
//   BASE_URL=http://127.0.0.1:9999 ADMIN_TOKEN=... k6 run k6/ratelimit.js
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:9999';
const ADMIN_TOKEN = __ENV.ADMIN_TOKEN || 'dev-admin-token';
const admitted = new Counter('admitted');
const limited = new Counter('limited');
const unexpected = new Counter('unexpected');

export const options = {
  scenarios: {
    steady: { executor: 'constant-arrival-rate', rate: 3, timeUnit: '1s', duration: '34s',
              preAllocatedVUs: 5 },
    burst: { executor: 'constant-arrival-rate', rate: 5, timeUnit: '1s', duration: '10s',
             startTime: '34s', preAllocatedVUs: 10 },
  },
  thresholds: {
    admitted: ['count==100'],
    limited: ['count==52'],
    unexpected: ['count==0'],
  },
};

export function setup() {
  const name = `k6-${Date.now()}`;
  const response = http.post(`${BASE_URL}/bucket`, JSON.stringify({ name, limit: 100, window_seconds: 3600 }), {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  check(response, { 'client created': (r) => r.status === 201 });
  return { id: response.json('id') };
}

export default function (data) {
  const response = http.get(`${BASE_URL}/example`, { headers: { 'X-Api-Id': data.id } });
  if (response.status === 200) {
    admitted.add(1);
  } else if (response.status === 429) {
    limited.add(1);
    check(response, { 'Retry-After on 429': (r) => Number(r.headers['Retry-After']) > 0 });
  } else {
    unexpected.add(1);
  }
}
