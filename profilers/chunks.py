"""A profiling job's timings uploaded as they are measured, and picked up by the next lease.

While it measures, the agent sends its parts' raw timings to the job it holds in chunks
(``POST /v1/jobs/{id}/timings``): every ``CHUNK_PARTS`` parts or ``CHUNK_SECONDS`` seconds,
whichever comes first, checked as each part ends. An agent that dies loses at most that much
work: whoever leases the job next is told which parts are timed (the lease reply's
``resume``) and, when it measures under the same context, fetches them
(``GET /v1/jobs/{id}/timings``) and times only the rest; under another context (tier,
protocol, threads, runtime, ...) it discards them and starts over, saying why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from profilers.measure import Timing

log = logging.getLogger(__name__)
CHUNK_PARTS = 32
CHUNK_SECONDS = 60.0


def chunk_body(timings: Iterable[Timing], context: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a chunk of ``timings`` (lease id apart)."""
    timings = list(timings)
    return {
        "timings": {t.name: t.samples_ms for t in timings},
        "context": dict(context),
        "signatures": {t.name: t.signature for t in timings if t.signature is not None},
        "shared_from": {t.name: t.shared_from for t in timings if t.shared_from is not None},
    }


class ChunkUploader:
    """Collects a job's part timings and sends them in chunks.

    Args:
        send: uploads one chunk body; returns False when the server could not be reached
            (the chunk is kept and sent with the next), raises ``NotImplementedError`` when
            the server takes no chunks (the result then carries every part), and anything
            else when the job is lost.
        context: the measurement context every chunk carries.
        parts: send once this many parts are waiting (0: never; the result carries them).
        seconds: or once this long has passed since the last chunk.
        clock: seconds, monotonic (a fake one drives the tests).
    """

    def __init__(
        self,
        send: Callable[[dict[str, Any]], bool],
        context: Mapping[str, Any],
        *,
        parts: int = CHUNK_PARTS,
        seconds: float = CHUNK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.context = dict(context)
        self.parts = parts
        self.seconds = seconds
        self.clock = clock
        self.pending: dict[str, Timing] = {}
        self.stored: set[str] = set()  # parts the server holds for this job
        self.chunks = 0
        self.last = clock()

    def add(self, timing: Timing) -> None:
        """Queue one part's timing; send the chunk when it is due."""
        self.pending[timing.name] = timing
        if self.parts > 0 and (
            len(self.pending) >= self.parts or self.clock() - self.last >= self.seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Send what is waiting, now (before the job is given back, say)."""
        if not self.pending or self.parts <= 0:
            return
        try:
            sent = self.send(chunk_body(self.pending.values(), self.context))
        except NotImplementedError as exc:
            log.warning("timings go with the result only: %s", exc)
            self.parts = 0
            return
        if not sent:
            return  # kept for the next chunk, or the result
        self.stored |= set(self.pending)
        self.pending.clear()
        self.chunks += 1
        self.last = self.clock()


def context_changes(stored: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    """``key: stored -> mine`` for each key of the two measurement contexts that differs."""
    return [
        f"{key}: {stored.get(key)!r} -> {mine.get(key)!r}"
        for key in sorted(set(stored) | set(mine))
        if stored.get(key) != mine.get(key)
    ]


def resumed_timings(parts: Mapping[str, Mapping[str, Any]]) -> dict[str, Timing]:
    """Timings of the parts a job holds already (``GET /v1/jobs/{id}/timings``'s ``parts``)."""
    return {
        name: Timing(
            name,
            [float(t) for t in part["samples_ms"]],
            signature=part.get("signature"),
            shared_from=part.get("shared_from"),
        )
        for name, part in parts.items()
    }
