"""Bounded retries with exponential backoff, for `TransientError` only.

A 4xx answer or a validation failure never gets better by asking again, so anything that is not
a `TransientError` propagates at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from edge_deploy.errors import TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full-jitter backoff: a random wait up to base * 2^attempt, capped."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


DEFAULT_POLICY = RetryPolicy()


def call_with_retry(fn: Callable[[], T], what: str, policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Call `fn`; on `TransientError` wait and try again, at most `policy.attempts` times."""
    for attempt in range(policy.attempts):
        try:
            return fn()
        except TransientError as exc:
            if attempt == policy.attempts - 1:
                raise TransientError(f"{what}: gave up after {policy.attempts} attempts: {exc}") from exc
            wait = policy.delay(attempt)
            log.warning("%s: %s; retrying in %.2fs (%d/%d)", what, exc, wait, attempt + 1, policy.attempts)
            time.sleep(wait)
    raise AssertionError("unreachable")
