"""Runs inside the image under acceptance (`docker exec`), with the image's own Python and nothing
but the standard library: waits until the runtime is ready, then asks it about each photo through
its endpoints on the container's loopback (the container has no network), and prints one JSON
object. Argument: the JSON job (port, model name, photos with their media types, query, repeats).
"""

import http.client
import json
import sys
import time
import urllib.parse

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
    result = {
        "ready_at": ready_at,
        "oip_ready": oip_ready,
        "oip_model": metadata if status == 200 else None,
        "answers": answers,
        "errors": errors,
        "latencies_ms": latencies,
    }
    print(json.dumps(result))


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
