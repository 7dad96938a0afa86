"""The `edge-deploy` command line: one module per concern, each imported only when one of its
commands runs, so a command starts with what it uses and nothing else (`--version` and the crypto
commands never load lakeFS, Flyte, torch or the Docker SDK; `edge-deploy --help` imports them all).

To add a command, add one line to `COMMANDS`: its name and where the click command lives.

Every command exits 0 on success. A known failure (`EdgeDeployError`) prints one line
`error: ...` to stderr and exits with the code of its class in `EXIT_CODES` (the "Exit
codes" of docs/user-guide.md); with `-v` the exception chain is logged first, at debug level, as pip does. Anything else
is a bug and ends in Python's traceback (exit 1). `--json` is offered wherever a script would read
the output.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from edge_deploy import __version__
from edge_deploy.errors import EdgeDeployError

log = logging.getLogger("edge_deploy.cli")

# command name -> "module:attribute" of its click command or group
COMMANDS: dict[str, str] = {
    "download": "edge_deploy.cli.storage:download",
    "publish": "edge_deploy.cli.storage:publish",
    "publish-cleanup": "edge_deploy.cli.storage:publish_cleanup",
    "encrypt": "edge_deploy.cli.keys:encrypt_command",
    "decrypt": "edge_deploy.cli.keys:decrypt_command",
    "keygen": "edge_deploy.cli.keys:keygen_command",
    "rewrap": "edge_deploy.cli.keys:rewrap_command",
    "inspect": "edge_deploy.cli.keys:inspect_command",
    "platforms": "edge_deploy.cli.images:platforms_command",
    "build": "edge_deploy.cli.images:build_command",
    "sample": "edge_deploy.cli.models:sample",
    "convert": "edge_deploy.cli.models:convert",
    "validate": "edge_deploy.cli.validate:validate",
    "deployments": "edge_deploy.cli.deployments:deployments",
    "status": "edge_deploy.cli.deployments:status_command",
    "sync": "edge_deploy.cli.deployments:sync_command",
    "demo": "edge_deploy.cli.demo:demo",
    "serve": "edge_deploy.cli.service:serve",
    "worker": "edge_deploy.cli.service:worker",
    "worker-alive": "edge_deploy.cli.service:worker_alive",
    "api-token": "edge_deploy.cli.service:api_token",
    "runtime": "edge_deploy.cli.runtime:runtime",
    "verify": "edge_deploy.cli.verify:verify",
}

EXIT_FAILED = 1  # any other failure (and Python's own code for a bug's traceback)
EXIT_USAGE = 2  # click's code for a bad argument or option, shared by a missing or malformed setting
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

# error class ("module:name", as the package exports it) -> exit code; the first class a failure
# is an instance of wins, so more specific classes come first. Resolved only when a command fails.
EXIT_CODES: tuple[tuple[str, int], ...] = (
    ("edge_deploy.validation:ValidationFailed", 6),  # the gate failed: the model must not ship
    ("edge_deploy.errors:TransientError", 5),  # timeout, reset, 5xx after bounded retries: run again later
    ("edge_deploy.crypto:CryptoError", 4),  # sealed file corrupted, tampered, or its key missing or wrong
    ("edge_deploy.errors:NotFoundError", 3),  # repository, ref or object does not exist
    ("edge_deploy.errors:ConfigError", EXIT_USAGE),  # a setting or option to fix
)


def exit_code(error: BaseException) -> int:
    """The exit code for a failure, by its class (see `EXIT_CODES`)."""
    for target, code in EXIT_CODES:
        module, _, name = target.partition(":")
        try:
            error_class = getattr(importlib.import_module(module), name)
        except ImportError:  # a package this installation lacks raised nothing
            continue
        if isinstance(error, error_class):
            return code
    return EXIT_FAILED


class _Main(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeDeployError as exc:
            log.debug("the error below, with its exception chain:", exc_info=exc)
            click.echo(f"error: {exc}", err=True)
            sys.exit(exit_code(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Main)
@click.version_option(__version__, prog_name="edge-deploy")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr, and the exception chain of a failure.")
def cli(verbose: bool) -> None:
    """OpenMMLab models from lakeFS to validated ONNX edge images."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    cli()
