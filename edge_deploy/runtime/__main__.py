"""`python3 -m edge_deploy.runtime`: the edge image's entry point (see edge_deploy.runtime).

Start-up is on the device's clock, so what can overlap does: the model is decrypted in a thread
while numpy and ONNX Runtime are imported (imports hold the GIL, decryption releases it), and the
HTTP stack (http.server, the codecs, the task pipeline) is imported in a thread while ONNX Runtime
creates its session (which releases it too).
"""

import importlib
import logging
import os
import sys
import threading

EXIT_STARTUP_FAILED = 2
TRANSPORT_MODULES = ("edge_deploy.runtime.server", "edge_deploy.runtime.dataplane")


def main() -> int:
    level = getattr(logging, os.environ.get("EDGE_LOG_LEVEL", "INFO").upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from edge_deploy.errors import EdgeDeployError
    from edge_deploy.runtime.config import RuntimeConfig

    try:
        config = RuntimeConfig.from_env()
        from edge_deploy.runtime.plaintext import start_opening  # the crypto module only

        opening = start_opening(config)  # decrypts while numpy and ONNX Runtime are imported
        from edge_deploy.runtime.model import load_model

        transport = threading.Thread(target=_import_transport, name="edge-runtime-imports", daemon=True)
        transport.start()
        model = load_model(config, opening)
        transport.join()
        from edge_deploy.runtime.dataplane import DataPlane

        plane = DataPlane.open(config, model)
    except EdgeDeployError as exc:
        # one line, naming what to fix; never a traceback that could show a key variable
        print(f"edge-runtime: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_STARTUP_FAILED
    from edge_deploy.runtime.server import serve

    serve(config, plane)
    return 0


def _import_transport() -> None:
    for name in TRANSPORT_MODULES:
        importlib.import_module(name)


if __name__ == "__main__":
    sys.exit(main())
