"""A Redis for `serve` where there is none: fakeredis' TCP server (with Lua, through lupa) as
a process of its own, speaking the protocol, so our code talks to it through the redis client
as it does to a real one. Development only: fakeredis is in the dev extra, its data lives in
memory and goes with the process.

    python -m callrail_sync.cli.fakeredis_server --port 6390
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callrail_sync.cli.fakeredis_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from fakeredis import TcpFakeServer

    server = TcpFakeServer((args.host, args.port), server_type="redis")
    server.daemon_threads = True  # a client still connected does not hold the exit
    stop = lambda *_: threading.Thread(target=server.shutdown).start()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"fakeredis listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
