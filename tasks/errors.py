"""How library errors surface in Flyte.

On a cluster a plain exception is final; `FlyteRecoverableException` lets the task's retries
apply. Only what a retry can cure (`TransientError`) is raised as recoverable.
"""

import contextlib
from collections.abc import Iterator

from flytekit.exceptions.user import FlyteRecoverableException

from edge_deploy.errors import TransientError


@contextlib.contextmanager
def retry_transient_failures() -> Iterator[None]:
    try:
        yield
    except TransientError as exc:
        raise FlyteRecoverableException(str(exc)) from exc
