"""What a budget query needs, kept in memory, so that a hot query touches no database.

A budget query resolves ``(supernet, device)`` to the device's latest profile, finds the
search of ``(supernet, profile, options)``, answers from that search's front and makes sure
the chosen configuration is stored. Finished searches, their fronts and stored
configurations never change, so they are kept (LRU) without expiry. Only the first step
can go stale, when a new profile version arrives (possibly through another process): a
resolution older than ``MESS_QUERY_CACHE_SECONDS`` is still used, while one background
query per key checks it (stale-while-revalidate); a changed answer drops it. Dropping it
outright instead sent every concurrent query down the database path at each expiry, which
set the p99 (175 ms against 23 ms, ``bench/service_load.py``, 32 clients). A profile
stored by this process drops its (supernet, device) resolution at once.
Used from the event loop only (not thread-safe).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from service.searches.schemas import SearchRequest
from service.searches.service import GFLOPS, DoneSearch, priced, search_key

Key = tuple[str, str]  # (supernet id, device name)


@dataclass
class _Resolved:
    profile_id: int | None
    correction: dict[str, Any] | None  # the profile's cost correction
    checked: float  # clock time of the last confirmation


@dataclass(frozen=True)
class Hit:
    """A finished search answering a query; ``stale``: its profile resolution wants a check."""

    done: DoneSearch
    stale: bool


class QueryCache:
    """Latest-profile resolutions, finished searches and known configurations.

    Args:
        ttl: seconds a resolution is used unchecked; 0 disables the cache.
        size: most entries per map.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self, ttl: float, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.profiles: LRUCache[Key, _Resolved] = LRUCache(maxsize=size)
        self.searches: LRUCache[str, DoneSearch] = LRUCache(maxsize=size)
        self.configurations: LRUCache[str, bool] = LRUCache(maxsize=16 * size)
        self.checking: set[Key] = set()

    def search(self, body: SearchRequest) -> Hit | None:
        """The finished search answering ``body``, if this process knows it."""
        if self.ttl <= 0:
            return None
        key = (body.supernet_id, body.device)
        resolved = self.profiles.get(key)
        if resolved is None:
            return None
        options = priced(body.options(), resolved.correction)
        done = self.searches.get(search_key(body.supernet_id, resolved.profile_id, options))
        if done is None:
            return None
        stale = (
            body.device != GFLOPS  # a GFLOPs cost table never changes
            and self.clock() - resolved.checked > self.ttl
            and key not in self.checking
        )
        if stale:
            self.checking.add(key)  # the caller checks; others keep using the resolution
        return Hit(done, stale)

    def checked(
        self,
        body: SearchRequest,
        profile_id: int | None,
        correction: dict[str, Any] | None = None,
    ) -> None:
        """The result of checking a stale resolution: the device's latest profile now, and
        its cost correction."""
        key = (body.supernet_id, body.device)
        self.checking.discard(key)
        resolved = self.profiles.get(key)
        if resolved is None:
            return
        if (resolved.profile_id, resolved.correction) == (profile_id, correction):
            resolved.checked = self.clock()
        else:  # a new profile version: the next query takes the database path
            del self.profiles[key]

    def check_failed(self, body: SearchRequest) -> None:
        """Checking failed (database away): the resolution stays stale, the next query retries."""
        self.checking.discard((body.supernet_id, body.device))

    def stored(self, configuration_id: str) -> bool:
        """Whether the configuration is known to be in the database."""
        return configuration_id in self.configurations

    def put(self, body: SearchRequest, done: DoneSearch, configuration_id: str) -> None:
        """Remember how ``body`` was answered from the database (its resolution is fresh)."""
        if self.ttl <= 0:
            return
        self.profiles[(body.supernet_id, body.device)] = _Resolved(
            done.profile_id, done.correction, self.clock()
        )
        self.searches[done.key] = done
        self.configurations[configuration_id] = True

    def put_configuration(self, configuration_id: str) -> None:
        """Remember that a configuration is now stored."""
        self.configurations[configuration_id] = True

    def forget_profile(self, supernet_id: str, device: str) -> None:
        """A new profile (or cost correction) of ``supernet_id`` on ``device`` was stored:
        resolve it afresh."""
        self.profiles.pop((supernet_id, device), None)
