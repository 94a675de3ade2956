"""Request rate limit: a token bucket per bearer token, or per client IP.

:class:`RateLimitMiddleware` is plain ASGI: one instance per app, its buckets in the memory
of the process (each API worker or replica limits on its own, so N workers allow N times the
rate). A bucket holds up to ``burst`` requests and refills at ``per_minute / 60`` per second;
a request finding it empty is answered 429 with ``Retry-After`` before the app (or the body)
is touched.

Which bucket pays: a request carrying a bearer token that has already authenticated on this
process spends from that token's bucket; every other request (no token, or a token not yet
seen to work, such as a forged one) spends from its client IP's bucket, so rotating made-up
tokens does not multiply a client's budget. A 401 takes a token off the list again (revoked,
expired). Tokens are kept only as sha256 digests. Behind a reverse proxy, start uvicorn with
``--proxy-headers --forwarded-allow-ips=<proxy>`` so that the client IP is the real one.

slowapi was considered: it wants a ``Limiter`` on ``app.state`` with per-route decorators, a
fixed or moving window (the ``limits`` package) rather than a bucket, a body other than
``{"detail": ...}``, and no notion of "a token that works"; this is shorter than adapting it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# routes that never check a token: no response of theirs proves that a token works
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# load balancers probe this one often, and it costs one SELECT 1
EXEMPT_PATHS = frozenset({"/healthz"})


class TokenBuckets:
    """Token buckets by key, the least recently used dropped past ``max_keys``.

    Dropping a bucket forgets what it had spent: at worst its key gets a full burst again.

    Args:
        per_minute: refill rate (requests per minute).
        burst: capacity (requests at once after a quiet spell).
        max_keys: most buckets kept.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError("per_minute and burst must be positive")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one request from ``key``'s bucket.

        Returns:
            0.0 when the request may go ahead, else the seconds until it could.
        """
        now = self.clock()
        level, stamp = self._buckets.pop(key, (self.burst, now))
        level = min(self.burst, level + (now - stamp) * self.rate)
        wait = 0.0
        if level >= 1.0:
            level -= 1.0
        else:
            wait = (1.0 - level) / self.rate
        self._buckets[key] = (level, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def _bearer_digest(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            credentials = credentials.strip()
            if scheme.lower() == b"bearer" and credentials:
                return hashlib.sha256(credentials).hexdigest()
            return None
    return None


class RateLimitMiddleware:
    """Answer 429 (JSON ``detail``, ``Retry-After``) to a client over its request rate.

    Args:
        app: the wrapped application.
        per_minute: requests per minute per token or client IP; 0 disables the limit.
        burst: requests at once above the rate; 0 disables the limit.
        max_keys: most buckets (and known tokens) kept in memory.
        clock: monotonic seconds (for tests).
    """

    def __init__(
        self,
        app: ASGIApp,
        per_minute: int,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.per_minute = per_minute
        self.burst = burst
        self.enabled = per_minute > 0 and burst > 0
        self.buckets = TokenBuckets(per_minute, burst, max_keys, clock) if self.enabled else None
        self.max_keys = max_keys
        self._working: OrderedDict[str, None] = OrderedDict()  # digests of tokens seen to work

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or self.buckets is None or path in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        token = _bearer_digest(scope)
        if token is not None and token in self._working:
            self._working.move_to_end(token)
            key = "token:" + token
        else:
            client = scope.get("client")
            key = "ip:" + (str(client[0]) if client else "unknown")
        wait = self.buckets.take(key)
        if wait > 0:
            await self._refuse(send, wait, key.split(":", 1)[0])
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if token is not None:
                self._learn(token, status, path)

    def _learn(self, token: str, status: int, path: str) -> None:
        if status == 401:
            self._working.pop(token, None)
        elif path not in PUBLIC_PATHS and (200 <= status < 400 or status in (403, 409, 422)):
            # the token passed authentication (a 404 may come from no route at all)
            self._working[token] = None
            self._working.move_to_end(token)
            while len(self._working) > self.max_keys:
                self._working.popitem(last=False)

    async def _refuse(self, send: Send, wait: float, kind: str) -> None:
        who = "token" if kind == "token" else "client address without a working token"
        detail = (
            f"rate limit exceeded: at most {self.per_minute} requests per minute per {who} "
            f"(bursts of {self.burst}); retry in {wait:.1f} s (MESS_RATE_LIMIT_PER_MINUTE)"
        )
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


__all__ = ["EXEMPT_PATHS", "PUBLIC_PATHS", "RateLimitMiddleware", "TokenBuckets"]
