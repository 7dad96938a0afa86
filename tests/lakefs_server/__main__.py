"""Command line: run the test lakeFS server until it is stopped (SIGTERM or Ctrl-C)."""

from __future__ import annotations

import argparse
import contextlib
import os

from tests.lakefs_server.api import make_server
from tests.lakefs_server.backing import BackingStore
from tests.lakefs_server.service import LakeFSService

SECRET_ENV = "LAKEFS_TEST_SERVER_SECRET_ACCESS_KEY"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lakefs_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--s3-endpoint", required=True, help="S3 server that stores the object data")
    parser.add_argument("--access-key-id", required=True, help="the lakeFS access key id clients must present")
    parser.add_argument(
        "--secret-access-key",
        default=os.environ.get(SECRET_ENV),
        help=f"the lakeFS secret access key (default: ${SECRET_ENV}, which keeps it out of the process list)",
    )
    parser.add_argument("--s3-access-key-id", default="test", help="credentials for the S3 server (moto: any)")
    parser.add_argument("--s3-secret-access-key", default="test")
    parser.add_argument("--s3-region", default="us-east-1")
    parser.add_argument("--committer", default="admin", help="the user name commits are recorded with")
    args = parser.parse_args(argv)
    if not args.secret_access_key:
        parser.error(f"give --secret-access-key or set {SECRET_ENV}")
    store = BackingStore(args.s3_endpoint, args.s3_access_key_id, args.s3_secret_access_key, args.s3_region)
    service = LakeFSService(store, committer=args.committer)
    server = make_server(args.port, service, args.access_key_id, args.secret_access_key, args.host)
    print(f"test lakeFS server on http://{args.host}:{args.port}/api/v1 -> S3 {args.s3_endpoint}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
