"""The runtime tests' key fixture, shared: the acceptance tests seal models and hand images that key."""

from tests.runtime.conftest import edge_key  # noqa: F401
