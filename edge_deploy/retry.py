"""Bounded retries with exponential backoff, for `TransientError` only (tenacity does the looping).

A 4xx answer or a validation failure never gets better by asking again, so anything that is not
a `TransientError` propagates at once. `RetryPolicy` is the one knob callers pass around.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from edge_deploy.errors import TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.2  # full-jitter backoff: a random wait up to base * 2^attempt ...
    max_delay: float = 5.0  # ... capped here

    def delay(self, attempt: int) -> float:
        """The wait before retry number `attempt` (from 0), for a caller that loops by itself."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


DEFAULT_POLICY = RetryPolicy()


def call_with_retry(fn: Callable[[], T], what: str, policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Call `fn`; on `TransientError` wait and try again, at most `policy.attempts` times in all."""

    def tell(state: tenacity.RetryCallState) -> None:
        log.warning(
            "%s: %s; retrying in %.2fs (%d/%d)",
            what,
            state.outcome.exception(),
            state.upcoming_sleep,
            state.attempt_number,
            policy.attempts,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_random_exponential(multiplier=policy.base_delay, max=policy.max_delay),
        retry=tenacity.retry_if_exception_type(TransientError),
        before_sleep=tell,
    )
    try:
        return retrying(fn)
    except tenacity.RetryError as exc:
        last = exc.last_attempt.exception()
        raise TransientError(f"{what}: gave up after {policy.attempts} attempts: {last}") from last
