"""Runs inside the image under acceptance (`docker exec`), with the image's own Python: waits until
the runtime is ready, then asks it about each photo through its endpoints on the container's
loopback (the container has no network) and prints one JSON object:
- each photo's body to /v1/predict (the task's answer);
- each photo's input tensor (tensors/<photo>.npz, made by MMDeploy's preprocessing in the gate) to
  /v2/models/<model>/infer with the binary tensor extension, as Triton's clients send it; the
  outputs come back base64-encoded as one .npz per photo.
Argument: the JSON job (port, model name, photos with their media types, query, repeats, tensors).
"""

import base64
import http.client
import io
import json
import sys
import time
import urllib.parse

# numpy dtype name -> Open Inference Protocol datatype
DATATYPES = {
    "float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
    "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "uint16": "UINT16", "bool": "BOOL",
}  # fmt: skip

READY_TIMEOUT_S = 300.0  # an emulated platform starts slowly


def main() -> None:
    job = json.loads(sys.argv[1])
    connection = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=120)
    ready_at = wait_ready(connection)
    oip_ready = request(connection, "GET", "/v2/health/ready")[0] == 200
    status, metadata = request(connection, "GET", f"/v2/models/{urllib.parse.quote(job['model'])}")
    answers, latencies, errors = {}, [], {}
    query = "?" + urllib.parse.urlencode(job["query"]) if job["query"] else ""
    for photo in job["photos"]:
        with open(f"/acceptance/photos/{photo['name']}", "rb") as file:
            body = file.read()
        for _ in range(job["repeats"]):
            started = time.perf_counter()
            code, answer = request(connection, "POST", "/v1/predict" + query, body, photo["media_type"])
            latencies.append((time.perf_counter() - started) * 1000)
        if code == 200:
            answers[photo["name"]] = answer
        else:
            errors[photo["name"]] = f"HTTP {code}: {json.dumps(answer)[:300]}"
    tensors = {}
    for photo in job["tensors"]:
        tensors[photo] = infer_tensors(connection, job["model"], f"/acceptance/tensors/{photo}.npz")
    result = {
        "tensors": tensors,
        "ready_at": ready_at,
        "oip_ready": oip_ready,
        "oip_model": metadata if status == 200 else None,
        "answers": answers,
        "errors": errors,
        "latencies_ms": latencies,
    }
    print(json.dumps(result))


def infer_tensors(connection: http.client.HTTPConnection, model: str, path: str) -> str:
    """The photo's input tensors through OIP infer (binary in and out); the outputs as a base64 .npz."""
    import numpy as np  # the runtime's own: only this question needs it

    with np.load(path) as arrays:
        inputs = {k.removeprefix("input/"): arrays[k] for k in arrays.files if k.startswith("input/")}
    header = {
        "inputs": [
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": DATATYPES[array.dtype.name],
                "parameters": {"binary_data_size": array.nbytes},
            }
            for name, array in inputs.items()
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    body = head + b"".join(np.ascontiguousarray(array).tobytes() for array in inputs.values())
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
    connection.request("POST", f"/v2/models/{urllib.parse.quote(model)}/infer", body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"OIP infer answered {response.status}: {data[:300]!r}")
    length = int(response.getheader("Inference-Header-Content-Length") or len(data))
    answer, at, outputs = json.loads(data[:length]), length, {}
    names = {v: k for k, v in DATATYPES.items()}
    for output in answer["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:  # a JSON tensor
            values = np.asarray(output["data"], dtype=names[output["datatype"]])
        else:
            values = np.frombuffer(data[at : at + size], dtype=names[output["datatype"]])
            at += size
        outputs[output["name"]] = values.reshape(output["shape"])
    packed = io.BytesIO()
    np.savez(packed, **outputs)
    return base64.b64encode(packed.getvalue()).decode("ascii")


def wait_ready(connection: http.client.HTTPConnection) -> float:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if request(connection, "GET", "/readyz")[0] == 200:
                return time.time()
        except (OSError, http.client.HTTPException):  # not listening yet
            connection.close()
        time.sleep(0.02)
    raise SystemExit(f"the runtime was not ready within {READY_TIMEOUT_S:.0f} s")


def request(connection, method, path, body=None, media_type=None):
    headers = {"Content-Type": media_type} if media_type else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, data.decode("utf-8", "replace")


if __name__ == "__main__":
    main()
