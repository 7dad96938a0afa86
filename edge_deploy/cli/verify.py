"""`edge-deploy verify IMAGE`: is this image what the pipeline made, from what it says?

    edge-deploy verify registry.example.com/models/resnet18:v3
    edge-deploy verify registry.example.com/models/resnet18@sha256:... --key release.pub --json

Walks the chain of evidence (edge_deploy.signing.chain): signature, provenance, labels, SBOM, the
sealed model inside the image, then in lakeFS the published validation report and the source
model's files. Exits 0 when no link is broken (links it could not reach are listed, and do not
fail it), 1 naming the first broken link.

The trusted key: --key, else EDGE_SIGNING_PUBLIC_KEY(_FILE), else the public half of
EDGE_SIGNING_KEY(_FILE) or of the Key Vault key EDGE_SIGNING_KEY_URI names. The registry's
credentials are EDGE_REGISTRY_*'s when IMAGE is on that registry; lakeFS's are LAKEFS_* (without
them, or with --no-lakefs, the lakeFS links are unreached).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from edge_deploy.config import RegistrySettings, Settings
from edge_deploy.errors import ConfigError, EdgeDeployError

MARKS = {"ok": "ok", "broken": "BROKEN", "unreached": "unreached", "skipped": "skipped"}


class ChainBroken(EdgeDeployError):
    """A link of an image's chain of evidence is broken."""


@click.command()
@click.argument("image")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM public key.")
@click.option("--no-lakefs", is_flag=True, help="Check only what the registry holds.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(image: str, key_file: Path | None, no_lakefs: bool, as_json: bool) -> None:
    """Verify IMAGE (host/repository:tag or @sha256:...) link by link."""
    from edge_deploy.images.registry import RegistryClient
    from edge_deploy.signing.chain import verify_chain

    settings = Settings.from_env()
    registry_settings, repository, reference = parse_image(image, settings)
    key = trusted_key(key_file, settings)
    lakefs = None
    if not no_lakefs and settings.lakefs_endpoint:
        from edge_deploy.storage.store import LakeFSStore  # lakefs-sdk and boto3 load only when used

        lakefs = LakeFSStore(settings.require_lakefs())
    report = verify_chain(RegistryClient(registry_settings), repository, reference, key, lakefs)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else render(report))
    broken = report.first_broken
    if broken is not None:
        digest, link = broken
        raise ChainBroken(f"the {link.name} link of {digest} is broken: {link.detail}")


def parse_image(image: str, settings: Settings) -> tuple[RegistrySettings, str, str]:
    """(registry, repository, tag or digest) of `image`; EDGE_REGISTRY's credentials when it is on it."""
    name, at, digest = image.partition("@")
    host, slash, path = name.partition("/")
    if not slash or not ("." in host or ":" in host or host == "localhost"):
        raise ConfigError(f"{image!r}: name the image with its registry, as in registry.example.com/models/x:tag")
    last = path.rsplit("/", 1)[-1]
    repository, tag = path.rsplit(":", 1) if ":" in last else (path, "latest")
    reference = digest if at else tag
    if at and not digest.startswith("sha256:"):
        raise ConfigError(f"{image!r}: the digest must be sha256:<hex>")
    if settings.registry and settings.registry.split("/", 1)[0] == host:
        return replace(settings.require_registry(), server=host), repository, reference
    return RegistrySettings(host, None, None, False, settings.registry_ca_bundle), repository, reference


def trusted_key(key_file: Path | None, settings: Settings):  # -> PublicKey (cryptography loads on use)
    from edge_deploy.signing.keys import PublicKey
    from edge_deploy.signing.release_signer import release_signer

    if key_file is not None:
        return PublicKey.from_pem(key_file.read_bytes(), f"--key {key_file}")
    if settings.signing_public_key:
        return PublicKey.from_pem(settings.signing_public_key.encode(), "EDGE_SIGNING_PUBLIC_KEY")
    signer = release_signer(settings)  # the PEM key's public half, or the one Key Vault answers with
    if signer is not None:
        return signer.public
    raise ConfigError("no key to verify with: pass --key FILE or set EDGE_SIGNING_PUBLIC_KEY (or _FILE)")


def render(report) -> str:
    lines = [f"{report.image} -> {report.digest}"]
    if report.index_signature is not None:
        lines.append(
            f"  {'index signature':<18} {MARKS[report.index_signature.status]:<9} {report.index_signature.detail}"
        )
    for chain in report.images:
        lines.append(f"  {chain.platform or 'image'} {chain.digest}")
        lines += [f"    {link.name:<18} {MARKS[link.status]:<9} {link.detail}" for link in chain.links]
    broken = report.first_broken
    lines.append("verified" if broken is None else f"broken: the {broken[1].name} link of {broken[0]}")
    return "\n".join(lines)
