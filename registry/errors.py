"""Every error the registry raises, in one tree.

::

    RateLimitError                 (limiter.errors: the base of every error of this project)
    └── RegistryError              a registry operation that cannot be done as asked
        ├── NameTaken              another client already holds the name (a concurrent
        │                          create won it, or the database already holds it)
        ├── UpdateConflict         the record changed under every attempt of an update
        └── StoreUnavailable       the registry's database refused a write, so the members
                                   made none; ``retry_after_seconds`` says when to try again

A client that does not exist is no error: reads, updates and deletes answer None. Nor is
a cluster that gives no answer: that is the limiter's ``BackendError`` (see
:func:`limiter.cluster_call`). The HTTP layer maps this tree to statuses in one place
(``api.errors``); the registry itself knows nothing of HTTP.
"""

from __future__ import annotations

from limiter.errors import RateLimitError

__all__ = ["NameTaken", "RegistryError", "StoreUnavailable", "UpdateConflict"]


class RegistryError(RateLimitError):
    """A registry operation that cannot be done as asked; the message is safe to show."""


class NameTaken(RegistryError):
    """Another client already holds the name."""

    def __init__(self) -> None:
        super().__init__("a client with this name already exists")


class UpdateConflict(RegistryError):
    """The record changed under every attempt of an update: a conflict, not an outage."""

    def __init__(self, attempts: int) -> None:
        super().__init__(f"the client changed {attempts} times during this update; try again")
        self.attempts = attempts


class StoreUnavailable(RegistryError):
    """The members could not write a registry change to PostgreSQL (write-through), so
    they made none: the client is as it was, and the same write may be sent again."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("registry database unavailable: nothing was changed, try again later")
        self.retry_after_seconds = retry_after_seconds
