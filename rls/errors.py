"""The one error a rate limit service configuration raises, and where it points.

::

    RateLimitError                (limiter.errors: every error of this project)
    ├── ConfigError               a configuration file refused: file, path inside it, why
    └── RequestError              a ShouldRateLimit request refused (INVALID_ARGUMENT)

Why one class: an operator validating a change (``python -m rls.config check DIR``) and
the service loading its configuration both need only "which file, where in it, what is
wrong", and the first error is enough to fix the file. The message reads
``config/a.yaml: descriptors[1].rate_limit.unit: unknown unit "fortnight"``.

:class:`Location` is how the loader carries "where am I" down the tree, so that every
check can name the exact path without threading strings by hand.
"""

from __future__ import annotations

import dataclasses

from limiter.errors import RateLimitError

__all__ = ["ConfigError", "Location", "RequestError"]


class ConfigError(RateLimitError):
    """A configuration file is refused. ``file`` and ``path`` say where (either may be
    empty: a directory that cannot be read has no path inside a file)."""

    def __init__(self, message: str, *, file: str = "", path: str = "") -> None:
        self.message = message
        self.file = file
        self.path = path
        super().__init__(": ".join(part for part in (file, path, message) if part))


class RequestError(RateLimitError):
    """A ``ShouldRateLimit`` request no answer can be given to (no domain, no descriptor,
    an unknown unit in a limit override, more than the service bounds): Envoy receives
    ``INVALID_ARGUMENT`` with this message, and applies its failure mode."""


@dataclasses.dataclass(frozen=True, slots=True)
class Location:
    """A point in one configuration file: the file's name and the path of keys and list
    indices that leads to the value being checked (``descriptors[0].rate_limit``)."""

    file: str
    path: str = ""

    def key(self, name: str) -> Location:
        """The location of ``name`` inside the mapping here."""
        return Location(self.file, f"{self.path}.{name}" if self.path else name)

    def index(self, i: int) -> Location:
        """The location of item ``i`` of the list here."""
        return Location(self.file, f"{self.path}[{i}]")

    def error(self, message: str) -> ConfigError:
        """An error pointing here, for the caller to raise."""
        return ConfigError(message, file=self.file, path=self.path)
