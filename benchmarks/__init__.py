"""Benchmarks of the rate-limit service: which one answers which question.

The product, ``python -m benchmarks`` (``make bench``; :mod:`benchmarks.__main__`, its
options in :mod:`benchmarks.options`), runs every strategy side by side on its own stack
and writes ``docs/benchmarks/report.*``:

- ``--only inprocess`` (:mod:`benchmarks.inprocess`): what does a strategy cost the
  cluster and the client library, without HTTP? The floors (``IMap.get``,
  ``IMap.set(ttl)``) and each strategy, by concurrency and key spread, in one process;
- ``--only scale`` (:mod:`benchmarks.scale`): what does a window cost the members at a
  million keys, and how would the partition threads' capacity grow with the cluster?
- ``--only endtoend`` (:mod:`benchmarks.endtoend.rounds`): what does a request cost
  through nginx and 3 replicas, against ``/health``? wrk, closed loop;
- ``--only k6`` (:mod:`benchmarks.rate_steps`): what arrival rate does each strategy
  hold (p99 under 100 ms, exact)? k6, constant arrival rate steps; and the original
  service's scenario made exact (:mod:`benchmarks.load.k6`);
- ``--only policies`` (:mod:`benchmarks.policies`): what does a client of three limits
  cost against a client of one, in process and end to end? Also alone:
  ``python -m benchmarks.policies`` (``make bench-policies``);
- ``--only rls`` (:mod:`benchmarks.rls`): what does the gRPC rate limit service decide
  per replica, what does Envoy's rate limit filter cost on it, and how does it compare
  with envoyproxy/ratelimit behind the same Envoy? Also alone: ``python -m
  benchmarks.rls`` (``make bench-rls``);
- ``--only failover`` (:mod:`benchmarks.failover`), last: with a million windows, does a
  member killed and a new one started under a flood through nginx lose, double or fail
  open any answer, and how long until every partition has a live owner again?

Its report: :mod:`benchmarks.results` (the shape), :mod:`benchmarks.report` (JSON and
Markdown), :mod:`benchmarks.plots` (PNGs). Shared by all: :mod:`benchmarks.stack` (the
one place the benchmark stack is built), :mod:`benchmarks.clients` (clients created
through the API), :mod:`benchmarks.stats` (the one percentile).

``python -m benchmarks.endtoend`` (``make bench-e2e``; :mod:`benchmarks.endtoend.tool`):
where does a request's CPU go, part by part, and how does a load spread over 1,000 or
100,000 clients fare? The tool the end-to-end part grew from, with CPU meters.

:mod:`benchmarks.load`: the load generators, used by the tests too (wrk, k6).

:mod:`benchmarks.tools`: run by hand when a question comes up (docs/profiling.md keeps
what each answered): ``profile`` (where the CPU goes, py-spy and JFR), ``paired`` (two
checkouts A/B), ``memory`` (bytes per window), ``create`` (the registry store's cost
to ``POST /bucket``), ``cpu`` (the ``/proc`` CPU meter).
"""
