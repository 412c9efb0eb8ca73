"""The local stack runner: the whole topology as plain processes on loopback, started,
awaited and stopped by pid, with a log each under ``.run``.

- Hazelcast members (``java``, ``hazelcast/hazelcast.xml``), awaited until each lists all
  of them, as a Hazelcast client on that member sees it;
- API replicas (``python -m api``), awaited on their ``/ready``;
- nginx in front of the replicas (and of the demo app, in gateway mode);
- Prometheus scraping the replicas;
- a static demo app, the upstream that gateway mode protects.

`make up`, `make down` and `make status` wrap its CLI (`python -m stack`). The test
fixtures drive the same ``Stack`` with their own ports, cluster name and run folder,
their replicas included, so the tests run the same processes a user does, and
`make down` stops whatever an interrupted test run left behind.
"""

from stack.runner import Stack, StackError

__all__ = ["Stack", "StackError"]
