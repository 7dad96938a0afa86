"""`python3 -m edge_deploy.runtime`: the edge image's entry point (see edge_deploy.runtime).

Start-up is on the device's clock (benchmarks/edge_runtime_ready.py measures it), so:
- what can overlap does: the model is decrypted in a thread while numpy and ONNX Runtime are
  imported (imports hold the GIL, decryption releases it), and the HTTP stack (http.server, the
  codecs, the task pipeline) is imported in a thread while ONNX Runtime creates its session (which
  releases it too), once the model is decrypted: started earlier, that import took the CPU from
  the decryption, which start-up then waited for;
- numpy's OpenBLAS gets one thread unless OPENBLAS_NUM_THREADS says otherwise: the runtime makes
  no BLAS calls (ONNX Runtime has its own thread pool), and the pool OpenBLAS starts on import
  spins for about 90 ms of CPU, which on a 2-CPU machine delayed the decryption and the imports;
- the cyclic garbage collector is off until the server starts (imports make objects, not garbage),
  then everything made so far is frozen out of its reach (`gc.freeze`): later collections never
  walk the modules and the model again.
"""

import gc
import importlib
import logging
import os
import sys
import threading

EXIT_STARTUP_FAILED = 2
BLAS_THREADS = "1"
TRANSPORT_MODULES = ("edge_deploy.runtime.server", "edge_deploy.runtime.dataplane")


def main() -> int:
    gc.disable()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", BLAS_THREADS)  # read when numpy is first imported
    level = getattr(logging, os.environ.get("EDGE_LOG_LEVEL", "INFO").upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from edge_deploy.errors import EdgeDeployError
    from edge_deploy.runtime.config import RuntimeConfig

    try:
        config = RuntimeConfig.from_env()
        from edge_deploy.runtime.plaintext import start_opening  # the crypto module only

        opening = start_opening(config)  # decrypts while numpy and ONNX Runtime are imported
        from edge_deploy.runtime.model import load_model

        if opening is not None:
            opening.wait()
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

    gc.freeze()
    gc.enable()
    serve(config, plane)
    return 0


def _import_transport() -> None:
    for name in TRANSPORT_MODULES:
        importlib.import_module(name)


if __name__ == "__main__":
    sys.exit(main())
