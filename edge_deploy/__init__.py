"""edge_deploy: OpenMMLab models from lakeFS to ONNX, validated, sealed and shipped as edge images.

This package is a library: it never imports flytekit, and this file imports nothing heavy, so the
edge runtime inside an image (which imports only `edge_deploy.runtime` and `edge_deploy.crypto`)
stays small.
"""

__version__ = "0.1.0"
