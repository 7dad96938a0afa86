"""`edge-deploy sample` and `edge-deploy convert`: model directories and their ONNX conversion."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click


@click.command()
@click.argument("name", required=False)
@click.argument("dest", type=click.Path(path_type=Path), required=False)
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
@click.option("--overwrite", is_flag=True, help="Replace DEST if it exists.")
@click.option("--list", "list_samples", is_flag=True, help="List the samples and exit.")
@click.option(
    "--config",
    "shipped",
    metavar="CODEBASE:PATH",
    help="Instead of a sample: a config the codebase ships (e.g. mmdet:mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py), "
    "random weights, no manifest. Give DEST as the only argument.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def sample(
    name: str | None,
    dest: Path | None,
    seed: int,
    overwrite: bool,
    list_samples: bool,
    shipped: str | None,
    as_json: bool,
):
    """Write the sample model directory NAME into DEST (offline, seeded random weights)."""
    from edge_deploy.samples import SAMPLES, write_sample, write_shipped_config

    if shipped:
        target = dest or (Path(name) if name else None)
        if target is None or (name and dest):
            raise click.UsageError("with --config, give only DEST: the directory to write the model into")
        write_shipped_config(shipped, target, seed=seed, overwrite=overwrite)
        click.echo(f"{shipped}: random weights, no manifest -> {target}")
        return
    if list_samples or name is None:
        for sample_name, spec in SAMPLES.items():
            click.echo(f"{sample_name:12} {spec.description}")
        return
    if dest is None:
        raise click.UsageError("missing DEST: the directory to write the sample into")
    model_dir = write_sample(name, dest, seed=seed, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(model_dir.manifest.to_dict(), indent=2))
    else:
        shape = "x".join(str(dim) for dim in model_dir.manifest.inputs[0].shape)
        click.echo(f"{name}: {model_dir.manifest.codebase} {model_dir.manifest.task.value}, input {shape} -> {dest}")


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the conversion result as JSON.")
def convert(model_dir: Path, out_dir: Path, overwrite: bool, as_json: bool) -> None:
    """Convert MODEL_DIR to OUT_DIR/end2end.onnx plus MMDeploy SDK metadata."""
    from edge_deploy.conversion import convert as convert_model_dir
    from edge_deploy.conversion import load_model_dir
    from edge_deploy.validation.gate import other_sizes_problem

    loaded = load_model_dir(model_dir)  # logs what it inferred when the directory has no manifest
    result = convert_model_dir(loaded, out_dir, overwrite=overwrite, size_check=other_sizes_problem)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        io = ", ".join(f"{name} {shape}" for name, shape in {**result.inputs, **result.outputs}.items())
        click.echo(
            f"{out_dir / result.onnx_file}: {result.size_bytes / 1e6:.1f} MB, opset {result.opset}, {io}; "
            f"{result.seconds:.1f} s, peak RSS {result.peak_rss_mb:.0f} MB"
        )


commands = [sample, convert]
