"""Polling for a condition that other processes or threads bring about."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value.

    The predicate runs at least once, and once more at the deadline, so a slow machine that
    sleeps past the deadline still gets a last look.

    Args:
        predicate: checks the condition; its truthy value is returned.
        timeout: seconds to wait in all.
        interval: seconds between calls.
        message: what did not happen, for the failure; a callable is called only then (to
            read a log, say).

    Returns:
        The predicate's first truthy value.

    Raises:
        AssertionError: with the message and the predicate's last value, on timeout.

    Example:
        >>> wait_until(lambda: 42, timeout=1)
        42
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (after {timeout:g} s; last value: {value!r})")
        time.sleep(min(interval, left))
