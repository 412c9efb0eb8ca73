"""End to end: requests through nginx and 3 replicas, loaded with wrk.

- :mod:`.rounds`: the suite's end-to-end part (``python -m benchmarks --only endtoend``):
  one round of its scenarios on replicas the suite has started for a strategy;
- :mod:`.tool`: the stand-alone tool (``python -m benchmarks.endtoend``) with its own
  stack, spread loads and the CPU each part spends per request;
- :mod:`.checks`: the exactness rules both apply to a run; :mod:`.counters`: the
  replicas' own counters read around a run.
"""
