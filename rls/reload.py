"""The configuration in force, and picking up a changed directory without a restart.

Why polling: a configuration directory is usually a mounted ConfigMap or a folder a
deploy tool rewrites; inotify misses changes made through symlink swaps (how Kubernetes
updates a ConfigMap) and is not there on every filesystem, while a stat of a few files
per second costs nothing. Each worker polls on its own event loop (``stat`` of the
directory and its files; a read and a parse only when their names, sizes or modification
times change) and swaps in the new :class:`rls.config.Config` as one reference, so a
request is decided by one configuration from start to end, never by half of two.

A directory that fails validation changes nothing: the error is logged (file, path in
it, why) and counted (``ratelimit_rls_config_loads_total{outcome="rejected"}``), and the
previous configuration stays in force until a valid one replaces it. A failed first load
leaves the service without a configuration: it answers ``UNAVAILABLE`` (Envoy applies its
failure mode) and reports NOT_SERVING to health checks, rather than answering OK to
everything.

A counter's key and state do not depend on the configuration generation (only on the
domain, the request's entries and each limit's name, algorithm and window: see
:mod:`rls.matching` and :attr:`limiter.Limit.slot`), so a reload that leaves a rule
unchanged leaves its counts unchanged, and a request in flight during a reload is
decided by exactly one of the two configurations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from rls.config import Config, load_directory
from rls.errors import ConfigError

__all__ = ["EXAMPLE_DIR", "ConfigWatch", "Fingerprint", "fingerprint"]

#: The configuration used when none is given: the package's example.
EXAMPLE_DIR = Path(__file__).resolve().parent / "examples"

#: What identifies one state of a directory's configuration files.
Fingerprint = tuple[tuple[str, int, int], ...]

log = logging.getLogger("ratelimit.rls")


def fingerprint(directory: Path) -> Fingerprint:
    """Name, size and modification time (ns) of each ``*.yaml``/``*.yml`` file in
    ``directory``, following symlinks; empty if the directory cannot be read."""
    entries: list[tuple[str, int, int]] = []
    try:
        paths = sorted(directory.iterdir())
    except OSError:
        return ()
    for path in paths:
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


class ConfigWatch:
    """The configuration in force for one worker (:attr:`config`), reloaded when the
    directory changes. ``on_load(outcome)`` is told ``"loaded"`` or ``"rejected"``."""

    def __init__(
        self,
        directory: Path | str,
        interval_seconds: float,
        on_load: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self.directory = Path(directory)
        self.interval_seconds = interval_seconds
        self.on_load = on_load
        #: The configuration in force; ``None`` until one loads.
        self.config: Config | None = None
        self._seen: Fingerprint | None = None
        self._task: asyncio.Task[None] | None = None

    def load_now(self) -> bool:
        """Loads the directory if it changed since the last attempt; whether the
        configuration in force is now the directory's."""
        seen = fingerprint(self.directory)
        if seen == self._seen:
            return self.config is not None
        self._seen = seen
        try:
            config = load_directory(self.directory)
        except ConfigError as error:
            kept = "the previous configuration stays in force" if self.config else "none"
            log.error("rate limit configuration rejected: %s (%s)", error, kept)
            self.on_load("rejected")
            return False
        self.config = config
        domains = ", ".join(sorted(config.domains)) or "none"
        log.info("rate limit configuration loaded from %s: domains %s", self.directory, domains)
        self.on_load("loaded")
        return True

    def start(self) -> None:
        """Loads once now, then polls every :attr:`interval_seconds` on this loop."""
        self.load_now()
        self._task = asyncio.get_running_loop().create_task(
            self._poll(), name="ratelimit-rls-config"
        )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                self.load_now()
            except Exception:  # a bug here must not stop the polling
                log.exception("rate limit configuration check failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
