"""The local stack runner: real Hazelcast members (and, later, API replicas, nginx and
Prometheus) as plain processes on loopback, started and stopped by pid.

`make up`, `make down` and `make status` wrap its CLI (`python -m stack`); the test
fixtures drive the same code with their own ports and run folder, so the tests run the
same processes a user does.
"""

from stack.runner import Stack, StackError

__all__ = ["Stack", "StackError"]
