"""A command that fails with the error class it is told to, for the exit-code tests (registered in
a subprocess as `edge-deploy fail KIND`; never part of the real command table). Each kind imports
only its own error class, so that every run starts quickly."""

from __future__ import annotations

import importlib

import click

ERRORS = {  # kind -> (error class, its arguments)
    "config": ("edge_deploy.errors:ConfigError", ("EDGE_REGISTRY is a host[:port][/namespace], not a URL",)),
    "not-found": ("edge_deploy.errors:NotFoundError", ("lakefs://models/main/model/: no such ref",)),
    "storage": ("edge_deploy.errors:StorageError", ("lakeFS answered 403",)),
    "corrupted": ("edge_deploy.crypto:CorruptedDataError", ("model.onnx.enc: chunk 3 failed authentication", 3)),
    "unknown-key": ("edge_deploy.crypto:UnknownKeyIdError", ("model.onnx.enc: unknown key id 'x'", "x")),
    "transient": ("edge_deploy.errors:TransientError", ("lakeFS at http://lakefs unreachable",)),
    "records-down": ("edge_deploy.records.store:RecordStoreUnavailable", ("MongoDB unreachable after 5 attempts",)),
    "registry-down": ("edge_deploy.images.errors:RegistryUnavailableError", ("registry kept answering 503",)),
    "gate": ("edge_deploy.validation:ValidationFailed", ("parity: output 'dets' max abs error 0.1", None)),
    "other": ("edge_deploy.errors:EdgeDeployError", ("the image build failed",)),
}


@click.command("fail")
@click.argument("kind", type=click.Choice(sorted([*ERRORS, "interrupt", "bug"])))
def fail(kind: str) -> None:
    if kind == "interrupt":
        raise KeyboardInterrupt
    if kind == "bug":
        raise ZeroDivisionError("a bug, not a failure the user can fix")
    target, arguments = ERRORS[kind]
    module, _, name = target.partition(":")
    error_class = getattr(importlib.import_module(module), name)
    try:
        raise ConnectionResetError("the connection was reset")  # a cause, to see the chain with -v
    except ConnectionResetError as cause:
        raise error_class(*arguments) from cause
