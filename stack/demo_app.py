"""The demo app: one static page, the "any upstream" that gateway mode and Envoy protect.

``python -m http.server`` with a listen backlog for floods: the module's own server
queues 5 connections, and a proxy that opens a hundred at once (Envoy passing a flood's
admitted requests on) had most of them refused, as 503s that were no fault of the proxy.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys

#: Connections the kernel queues before the server accepts them (capped by somaxconn).
BACKLOG = 1024


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = BACKLOG
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.demo_app", description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--directory", required=True)
    parser.add_argument("port", type=int)
    args = parser.parse_args(argv)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=args.directory)
    with Server((args.bind, args.port), handler) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
