"""Read-only queries the dashboard needs and the domains do not offer (yet): the agents
holding leases, the queue by status, recent searches, the latest profile of each device.

Everything else the pages show comes from the domains' own service and repository
functions, as the API's routes use them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.devices.models import Device
from service.jobs.models import LEASED, Job
from service.profiles import repository as profiles
from service.profiles.models import Profile
from service.searches import repository as searches
from service.searches.models import Search
from service.searches.schemas import SearchRequest
from service.searches.service import priced, search_key
from service.supernets.models import Supernet
from service.verifications import service as verifications


def live_agents(session: Session, now: dt.datetime) -> dict[int, list[str]]:
    """Per device id, the agents (token names) holding an unexpired lease: its live pool."""
    stmt = (
        select(Job.device_id, Job.leased_by)
        .where(Job.status == LEASED, Job.lease_expires_at > now, Job.leased_by.is_not(None))
        .distinct()
    )
    agents: dict[int, list[str]] = defaultdict(list)
    for device_id, name in session.execute(stmt).all():
        agents[device_id].append(str(name))
    return {k: sorted(v) for k, v in agents.items()}


def last_job_activity(session: Session) -> dict[int, dt.datetime]:
    """Per device id, when an agent last leased, beat or finished one of its jobs."""
    stmt = (
        select(Job.device_id, func.max(Job.updated_at))
        .where(Job.leased_by.is_not(None))
        .group_by(Job.device_id)
    )
    return {device_id: at for device_id, at in session.execute(stmt).all() if at is not None}


def latest_profile_per_device(session: Session) -> dict[int, Profile]:
    """Per device id, its newest profile (of any supernet)."""
    newest = select(func.max(Profile.id)).group_by(Profile.device_id)
    rows = session.scalars(select(Profile).where(Profile.id.in_(newest))).all()
    return {p.device_id: p for p in rows}


@dataclass(frozen=True)
class QueueLine:
    status: str
    count: int
    oldest: dt.datetime | None  # the oldest last change among jobs in that status


def queue(session: Session) -> list[QueueLine]:
    """The job queue by status."""
    stmt = select(Job.status, func.count(), func.min(Job.updated_at)).group_by(Job.status)
    return [QueueLine(s, int(n), at) for s, n, at in session.execute(stmt).all()]


@dataclass(frozen=True)
class SearchLine:
    search: Search
    supernet: str
    device: str  # a device name, or "gflops"


def recent_searches(session: Session, limit: int = 10) -> list[SearchLine]:
    """The newest searches with their supernet's and device's names."""
    stmt = (
        select(Search, Supernet.name, Device.name)
        .join(Supernet, Supernet.id == Search.supernet_id)
        .outerjoin(Profile, Profile.id == Search.profile_id)
        .outerjoin(Device, Device.id == Profile.device_id)
        .order_by(Search.id.desc())
        .limit(limit)
    )
    return [SearchLine(s, sn, d or "gflops") for s, sn, d in session.execute(stmt).all()]


def default_options(supernet_id: str) -> dict[str, Any]:
    """The search options of ``mess query`` and of a ``POST /v1/search`` left at defaults."""
    request = SearchRequest(supernet_id=supernet_id, device="gflops", objective="pareto")
    return request.options()


@dataclass(frozen=True)
class DeviceFront:
    """A device's latest profile of a supernet and the search of its default front (None:
    nobody asked for it yet)."""

    device: str
    profile: Profile
    search: Search | None


def device_fronts(session: Session, supernet_id: str) -> list[DeviceFront]:
    """For every device with a profile of the supernet, its front at default options."""
    latest: dict[str, Profile] = {}
    for profile, device in profiles.list_profiles(session, supernet_id, None, 1000, 0):
        latest.setdefault(device, profile)  # newest version first
    options = default_options(supernet_id)

    def front_search(profile: Profile) -> Search | None:
        # with the profile's cost correction, as POST /v1/search resolves it
        correction = verifications.search_option(
            verifications.current_correction(session, profile.id)
        )
        key = search_key(supernet_id, profile.id, priced(options, correction))
        return searches.by_key(session, key)

    return [DeviceFront(device, p, front_search(p)) for device, p in sorted(latest.items())]


def device_profiles(session: Session, device: str) -> Sequence[tuple[Profile, str]]:
    """A device's profiles, of every supernet, newest version first."""
    return profiles.list_profiles(session, None, device, 1000, 0)
