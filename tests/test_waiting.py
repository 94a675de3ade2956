"""``tests/waiting.py``: ``wait_until`` returns the first truthy value or fails in time."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from tests.waiting import wait_until


def test_returns_the_first_truthy_value() -> None:
    values: Iterator[object] = iter([0, [], None, "ready", "later"])
    assert wait_until(lambda: next(values), timeout=5, interval=0.001) == "ready"


def test_a_timeout_fails_with_the_message_and_the_last_value() -> None:
    calls = itertools.count()
    start = time.monotonic()
    with pytest.raises(
        AssertionError, match=r"the job never ran \(after 0.2 s; last value: \[\]\)"
    ):
        wait_until(
            lambda: next(calls) and [], timeout=0.2, interval=0.05, message="the job never ran"
        )
    assert 0.2 <= time.monotonic() - start < 2
    assert next(calls) >= 3  # polled meanwhile, and once more at the deadline


def test_a_callable_message_is_read_only_on_timeout() -> None:
    read: list[str] = []

    def log() -> str:
        read.append("log")
        return "agent log: nothing"

    assert wait_until(lambda: True, timeout=1, message=log) is True
    assert read == []
    with pytest.raises(AssertionError, match="agent log: nothing"):
        wait_until(lambda: False, timeout=0, message=log)
    assert read == ["log"]
