"""`edge-deploy runtime MODEL_DIR`: the edge image's runtime on this machine, without Docker.

    edge-deploy runtime out/resnet18            a converted directory (end2end.onnx + serving.json)
    edge-deploy runtime build/model --port 9000 a sealed one (model.onnx.enc + model.json; keys as in the image)

The same server the image runs (`python3 -m edge_deploy.runtime`), configured by the same EDGE_*
variables; MODEL_DIR, --host and --port override EDGE_MODEL_DIR, EDGE_HOST and EDGE_PORT.
"""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port (0: any free one).")
def runtime(model_dir: Path, host: str, port: int) -> None:
    """Serve MODEL_DIR as an edge image would: /v1/predict, /v1/infer and the Open Inference Protocol."""
    from edge_deploy.runtime.config import RuntimeConfig
    from edge_deploy.runtime.dataplane import DataPlane
    from edge_deploy.runtime.model import load_model
    from edge_deploy.runtime.server import serve

    env = {**os.environ, "EDGE_MODEL_DIR": str(model_dir), "EDGE_HOST": host, "EDGE_PORT": str(port)}
    config = RuntimeConfig.from_env(env)
    plane = DataPlane.open(config, load_model(config))
    serve(config, plane, announce=lambda url: click.echo(f"serving {plane.name} at {url} (Ctrl-C stops)"))
