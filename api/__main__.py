"""``python -m api``: one replica from ``RATELIMIT_*``, with ``RATELIMIT_WORKERS`` workers.

No auto-reload, no debug, no access log. Metrics of all workers are summed through
``PROMETHEUS_MULTIPROC_DIR``: an empty private directory made here and removed at exit,
or, when the variable is already set, that directory, emptied of old samples first.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

from sanic import Sanic
from sanic.worker.loader import AppLoader

from api.app import create_app
from api.metrics import MULTIPROC_ENV
from api.settings import Settings
from limiter import SettingsError

#: Connections the kernel queues for a replica before it accepts them (Sanic's default is
#: 100). nginx opens a burst of connections to each replica when hundreds of clients
#: arrive at once; with a short queue the kernel drops their SYNs, nginx's connect times
#: out (1 s) and it counts the busy replica as failed. 1024 holds a burst of a thousand
#: clients landing on one replica; the kernel caps it at net.core.somaxconn.
ACCEPT_BACKLOG = 1024


def prepare_metrics_dir() -> Path | None:
    """Sets up the multiprocess metrics directory; returns it when it is ours to remove.

    The workers are separate processes started after this (Sanic spawns them), so they
    all see the variable before they first import prometheus_client.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("*.db"), *folder.glob("connected-*")]:
            stale.unlink()
        return None
    folder = Path(tempfile.mkdtemp(prefix="ratelimit-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    own_dir = prepare_metrics_dir()
    try:
        loader = AppLoader(factory=partial(create_app, settings))
        app = loader.load()
        app.prepare(
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            backlog=ACCEPT_BACKLOG,
            debug=False,
            auto_reload=False,
            access_log=False,
            motd=False,
        )
        Sanic.serve(primary=app, app_loader=loader)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
