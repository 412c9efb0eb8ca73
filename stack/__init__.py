"""The local stack runner: the whole topology as plain processes on loopback, started,
awaited and stopped by pid, with a log each under ``.run``.

- Hazelcast members (``java``, ``hazelcast/hazelcast.xml``), awaited until each lists all
  of them, as a Hazelcast client on that member sees it;
- PostgreSQL, the registry's durable copy;
- API replicas (``python -m api``), awaited on their ``/ready``;
- nginx in front of the replicas (and of the demo app, in gateway mode);
- Prometheus scraping the replicas;
- a static demo app, the upstream that gateway mode protects.

`make up`, `make down` and `make status` wrap its CLI (`python -m stack`). The test
fixtures drive the same ``Stack`` on a ``Layout`` of their own (ports), with their own
cluster name and run folder, their replicas included, so the tests run the same
processes a user does, and `make down` stops whatever an interrupted test run left behind.

One module per part: :mod:`stack.layout` (ports), :mod:`stack.process` (pid files,
logs, start and stop), :mod:`stack.members`, :mod:`stack.postgres`,
:mod:`stack.frontends` (replicas, nginx, Prometheus, demo app), and :mod:`stack.facade`
(``Stack``, the parts together).
"""

from stack.errors import StackError
from stack.facade import Stack
from stack.layout import LOOPBACK, ROOT, Layout
from stack.members import MEMBER_CONFIG, MemberSettings
from stack.process import Part, http_ok, poll_until, port_is_free

__all__ = [
    "LOOPBACK",
    "MEMBER_CONFIG",
    "ROOT",
    "Layout",
    "MemberSettings",
    "Part",
    "Stack",
    "StackError",
    "http_ok",
    "poll_until",
    "port_is_free",
]
