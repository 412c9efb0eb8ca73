"""A process that takes one key's IMap lock, as a replica of the lock strategy does, and
then holds it until it is killed: the crashed lock holder of test_process_loss.py.

    python tests/integration/lock_holder.py MEMBERS CLUSTER MAP KEY LEASE_SECONDS

Prints ``locked <time.monotonic()>`` once the lock is held (the monotonic clock is the
machine's, so the test compares it with its own), or ``busy`` and exits 1 when the lock
could not be had within 10 s.
"""

from __future__ import annotations

import sys
import threading
import time

from hazelcast import HazelcastClient


def main(members: str, cluster: str, map_name: str, key: str, lease: str) -> int:
    client = HazelcastClient(
        cluster_name=cluster,
        cluster_members=members.split(","),
        cluster_connect_timeout=20.0,
        statistics_enabled=False,
    )
    counters = client.get_map(map_name).blocking()
    if not counters.try_lock(key, lease_time=float(lease), timeout=10.0):
        print("busy", flush=True)
        client.shutdown()
        return 1
    print(f"locked {time.monotonic():.6f}", flush=True)
    threading.Event().wait()  # until SIGKILL: a crash, never an unlock
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
