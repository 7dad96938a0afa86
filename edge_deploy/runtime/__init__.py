"""The edge runtime: what runs inside an edge image (`python3 -m edge_deploy.runtime`).

It imports only the standard library, numpy, onnxruntime and `edge_deploy.crypto` (never torch,
mmcv/mmdeploy, flytekit or boto3), so an image is its base plus the ONNX Runtime layer. At start it
loads the key-encryption keys (EDGE_KEY_<ID>, EDGE_KEY_<ID>_FILE, or one file per key id in
EDGE_KEY_DIR, default /run/secrets/edge-keys; no other setting is read), decrypts the sealed model
into one memory file ONNX Runtime opens (or, with EDGE_DECRYPT_TO=pipe, through a pipe it reads
while parsing; see `plaintext`: the plaintext never touches a disk), creates the session with the
platform's execution providers (falling back to CPU with one warning), and serves HTTP only once
every chunk is authenticated and the sha256 matches model.json. Without a usable key
it exits with status 2 and one line naming the key id.

Environment (the image sets the first three):
    EDGE_MODEL_DIR        directory with model.onnx.enc and model.json    (/opt/edge/model)
    EDGE_PROVIDERS        execution providers, comma-separated, preferred first
    EDGE_PORT             TCP port (8080); EDGE_HOST the address (0.0.0.0)
    EDGE_MAX_BODY_BYTES   largest request body accepted (64 MiB)
    EDGE_DECRYPT_TO       memory: the fastest start, the model's size in memory while loading;
                          pipe: no plaintext buffer at all, a slower start (CPU sessions)
    EDGE_LOG_LEVEL        INFO

HTTP API:
    GET  /healthz      200 {"status": "ok"} while the process serves
    GET  /readyz       200 {"status": "ready"} once the model is loaded; 503 while shutting down
    GET  /v1/model     name, model sha256, inputs/outputs (name, shape, dtype), providers, platform
    POST /v1/infer     run the model, inputs given in one of these bodies:
      application/json     {"inputs": {"<input name>": <nested list>, ...}}
                           -> {"outputs": {"<name>": {"dtype": "float32", "shape": [...], "data": <nested list>}}}
      application/x-npz    a NumPy .npz archive (numpy.savez) with one array per input, named by input name
      application/x-npy    a single .npy array (numpy.save), for a model with exactly one input
    The response is JSON for a JSON request and an .npz archive of the outputs (named by output name)
    for a binary one; `Accept: application/json` or `Accept: application/x-npz` chooses explicitly.
    Binary inputs must have the input's exact dtype; JSON numbers are converted to it. Dimensions
    the model fixes must match; dynamic ones (e.g. batch) may be anything. Errors are JSON
    {"error": "<reason>"} with 400 (bad input), 404, 405, 411, 413 (body too large), 415 (content type).
SIGTERM or SIGINT: stop accepting, finish the requests in flight, exit 0.
"""
