"""Command line: the referrers proxy until it is stopped (see the package docstring)."""

from __future__ import annotations

import argparse
import contextlib

from tests.referrers_proxy.server import make_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.referrers_proxy", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--registry", required=True, help="the registry's base URL, e.g. http://127.0.0.1:5000")
    args = parser.parse_args(argv)
    server = make_server(args.port, args.registry)
    print(f"referrers proxy on 127.0.0.1:{args.port} -> {args.registry}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
