"""Command line: run the Key Vault stand-in until it is stopped (SIGTERM or Ctrl-C)."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from tests.keyvault_server.server import Vault, make_server

SECRET_ENV = "KEYVAULT_STAND_IN_CLIENT_SECRET"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.keyvault_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certificate", required=True, help="PEM certificate for 127.0.0.1 (TLS, as Key Vault)")
    parser.add_argument("--private-key", required=True, help="its PEM private key")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--federated-token-file", type=Path, help="the token a workload identity presents")
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        parser.error(f"set {SECRET_ENV}")
    federated = args.federated_token_file.read_text().strip() if args.federated_token_file else None
    vault = Vault(args.tenant, args.client_id, secret, federated)
    server = make_server(args.port, vault, args.certificate, args.private_key)
    print(f"Key Vault stand-in on {vault.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
