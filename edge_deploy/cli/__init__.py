"""The `edge-deploy` command line: one subcommand group per concern, each in its own module.

Every command exits 0 on success and, on a known failure (`EdgeDeployError`), prints one line
`error: ...` to stderr and exits 1. `--json` is offered wherever a script would read the output.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from edge_deploy import __version__
from edge_deploy.errors import EdgeDeployError

# Each module defines `commands`: a list of click commands or groups to add to the top level.
COMMAND_MODULES = [
    "edge_deploy.cli.storage",
    "edge_deploy.cli.keys",
    "edge_deploy.cli.images",
    "edge_deploy.cli.models",
    "edge_deploy.cli.validate",
    "edge_deploy.cli.deployments",
    "edge_deploy.cli.demo",
]


class _Main(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeDeployError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Main)
@click.version_option(__version__, prog_name="edge-deploy")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def cli(verbose: bool) -> None:
    """OpenMMLab models from lakeFS to validated ONNX edge images."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)


def main() -> None:
    cli()
