"""The edge runtime: what runs inside an edge image (`python3 -m edge_deploy.runtime`), and what
`edge-deploy runtime MODEL_DIR` runs on a development machine.

It imports only the standard library, numpy, onnxruntime, `edge_deploy.crypto` and, for photos,
Pillow (never torch, mmcv/mmdeploy, OpenCV, flytekit or boto3), so an image is its base plus the
runtime layer. At start it loads the key-encryption keys (EDGE_KEY_<ID>, EDGE_KEY_<ID>_FILE, or one
file per key id in EDGE_KEY_DIR, default /run/secrets/edge-keys), decrypts the sealed model into
one memory file ONNX Runtime takes its weights from in place (or, with EDGE_DECRYPT_TO=pipe,
through a pipe; see `plaintext`: the plaintext never touches a disk), registers the operator libraries model.json
names, creates the session with the platform's execution providers (falling back to CPU with one
warning), replays serving.json's pipeline on probe frames, and serves HTTP only once every chunk is
authenticated and the sha256 matches model.json. A problem exits with status 2 and one line that
names what to fix. docs/device-guide.md is the device team's description.

Laid out like a model server: `signature` (a required signature, checked before decrypting),
`codecs/` (bytes <-> arrays: .npy/.npz, JSON, the Open Inference Protocol's tensors, photos),
`dataplane` (protocol-neutral: readiness, metadata, infer, predict), `serving` + `preprocess` +
`answers` + `resize` (the task: the model's recorded pipeline, in numpy), `routes` (endpoints) and
`server` (the HTTP/1.1 transport and its limits).

Environment (the image sets the first three):
    EDGE_MODEL_DIR          model.onnx.enc + model.json (+ serving.json, SDK metadata, ops/)  (/opt/edge/model);
                            or a conversion's directory with a plaintext end2end.onnx
    EDGE_PROVIDERS          execution providers, comma-separated, preferred first
    EDGE_PORT, EDGE_HOST    8080 on 0.0.0.0
    EDGE_MODEL_NAME         the Open Inference Protocol's model name (model)
    EDGE_DECRYPT_TO         memory (fastest start: ONNX Runtime takes the weights in place), memory-copy
                            (ONNX Runtime copies them: no more memory than from a plain file once
                            loaded) or pipe (no plaintext buffer at all; CPU sessions)
    EDGE_MAX_BODY_BYTES     largest body, and what an .npz may unpack to (64 MiB)
    EDGE_MAX_JSON_ELEMENTS  numbers in a JSON body (4194304)
    EDGE_MAX_IMAGE_PIXELS   a photo's width x height, read from its header (40000000)
    EDGE_MAX_INFLIGHT       requests read or run at once; more get 503 + Retry-After (8)
    EDGE_MAX_CONNECTIONS    open connections; more are answered 503 and closed (64)
    EDGE_IDLE_TIMEOUT_S     a keep-alive connection idle this long is closed (15)
    EDGE_BODY_TIMEOUT_S     a body that stops arriving this long gets 408 (10)
    EDGE_REQUIRE_SIGNED_MODEL
                            true: serve model.onnx.enc only if model.onnx.enc.sig is its signature by
                            the trusted key, checked before anything is decrypted (false)
    EDGE_SIGNING_PUBLIC_KEY, EDGE_SIGNING_PUBLIC_KEY_FILE
                            that trusted key, an ECDSA P-256 PEM the device provides (never the image)
    EDGE_LOG_LEVEL          INFO
    OPENBLAS_NUM_THREADS    numpy's BLAS threads (1: the runtime makes no BLAS calls; see `__main__`)

HTTP API (routes): /healthz, /readyz, /v1/model, POST /v1/predict (a photo in, the task's answer
out), POST /v1/infer (tensors as .npz, .npy or JSON), and the Open Inference Protocol v2 under /v2.
SIGTERM or SIGINT: stop accepting, close idle connections, finish the requests in flight, exit 0.
"""
