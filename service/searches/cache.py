"""What a budget query needs, kept in memory, so that a hot query touches no database.

A budget query resolves ``(supernet, device)`` to the device's latest profile, finds the
search of ``(supernet, profile, options)``, answers from that search's front and makes sure
the chosen configuration is stored. Finished searches, their fronts and stored
configurations never change, so they are kept (LRU) without expiry. Only the first step
can go stale, when a new profile version arrives: that mapping lives
``MESS_QUERY_CACHE_SECONDS``, and a profile stored by this process drops it at once.
Used from the event loop only (not thread-safe).
"""

from __future__ import annotations

import time

from cachetools import LRUCache, TTLCache

from service.searches.schemas import SearchRequest
from service.searches.service import DoneSearch, search_key


class QueryCache:
    """Latest-profile resolutions (short-lived), finished searches and known configurations."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl = ttl
        self.profiles: TTLCache[tuple[str, str], tuple[int | None]] = TTLCache(
            maxsize=size, ttl=max(ttl, 1e-9), timer=time.monotonic
        )
        self.searches: LRUCache[str, DoneSearch] = LRUCache(maxsize=size)
        self.configurations: LRUCache[str, bool] = LRUCache(maxsize=16 * size)

    def search(self, body: SearchRequest) -> DoneSearch | None:
        """The finished search answering ``body``, if this process knows it."""
        if self.ttl <= 0:
            return None
        resolved = self.profiles.get((body.supernet_id, body.device))
        if resolved is None:
            return None
        return self.searches.get(search_key(body.supernet_id, resolved[0], body.options()))

    def stored(self, configuration_id: str) -> bool:
        """Whether the configuration is known to be in the database."""
        return configuration_id in self.configurations

    def put(self, body: SearchRequest, done: DoneSearch, configuration_id: str) -> None:
        """Remember how ``body`` was answered."""
        if self.ttl <= 0:
            return
        self.profiles[(body.supernet_id, body.device)] = (done.profile_id,)
        self.searches[done.key] = done
        self.configurations[configuration_id] = True

    def forget_profiles(self) -> None:
        """A new profile was stored: resolve devices afresh."""
        self.profiles.clear()
