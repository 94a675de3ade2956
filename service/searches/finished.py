"""In-process notice that a search finished, so that a request waiting for its front wakes
at once instead of polling the database.

The worker threads call :meth:`FinishedSearches.notify` after committing a search's outcome;
a request on the event loop awaits the :class:`asyncio.Event` of :meth:`watch`. A search
finished by another process is not announced here: waiters re-check the database now and
then (``service.searches.routes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]


class FinishedSearches:
    """Events of the searches requests are waiting for, set from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, list[_Waiter]] = {}

    @contextlib.contextmanager
    def watch(self, search_id: int) -> Iterator[asyncio.Event]:
        """An event set when ``search_id`` finishes; call on the event loop, and check the
        search's status after entering (it may have finished just before)."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiting.setdefault(search_id, []).append(waiter)
        try:
            yield waiter[1]
        finally:
            with self._lock:
                waiters = self._waiting[search_id]
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[search_id]

    def notify(self, search_id: int) -> None:
        """``search_id`` is done or failed (committed): wake its waiters."""
        with self._lock:
            waiters = list(self._waiting.get(search_id, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiting.values())
