"""What a write in one domain sets off in another, wired by :func:`service.app.create_app`.

Pushing a supernet or registering a device queues profiling jobs, and the jobs domain is
built on supernets and devices (it reads their rows). The supernets and devices routes
call these hooks, which the app points at the jobs domain, so that no domain imports one
that imports it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Hooks:
    """Called in the writer's transaction.

    Attributes:
        supernet_stored: ``(session, supernet id)`` after a new supernet is added.
        device_registered: ``(session, device id, changed)`` after a device registers;
            ``changed``: its measurements are out of date (a new runtime version, say).
    """

    supernet_stored: Callable[[Session, str], object]
    device_registered: Callable[[Session, int, bool], object]
