"""Test-wide setup: real services on loopback (tests/fixtures), and a clean Flyte environment."""

import os

# Flyte's local cache would make a test pass on a previous run's outputs.
os.environ.setdefault("FLYTE_LOCAL_CACHE_ENABLED", "false")

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.lakefs",
    "tests.fixtures.redis",
    "tests.fixtures.mongo",
    "tests.fixtures.registry",
    "tests.fixtures.docker_engine",
    "tests.fixtures.base_images",
    "tests.fixtures.models",
    "tests.fixtures.flyte_cache",
    "tests.fixtures.keyvault",
]
