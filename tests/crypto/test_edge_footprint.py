"""The crypto package ships inside edge images: importing it must pull in only the stdlib and `cryptography`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
before = set(sys.modules)
import edge_deploy.crypto
loaded = {name.split(".")[0] for name in set(sys.modules) - before}
print(json.dumps(sorted(loaded - set(sys.stdlib_module_names))))
"""


def test_importing_crypto_loads_nothing_but_the_stdlib_cryptography_and_itself() -> None:
    output = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, check=True, capture_output=True, text=True).stdout
    # _openssl is registered by pyca's compiled bindings; _cffi_backend is cffi, a dependency of pyca
    allowed = {"edge_deploy", "cryptography", "_openssl", "_cffi_backend"}
    assert set(json.loads(output)) - allowed == set()
