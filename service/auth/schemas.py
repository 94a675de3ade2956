"""Token request and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "engineer", "agent"]


class TokenCreate(BaseModel):
    """A new token's name, role and optional expiry."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "lab-pixel-7", "role": "agent", "expires_at": None}]
        },
    )

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    role: Role
    expires_at: dt.datetime | None = Field(
        default=None, description="UTC expiry (ISO 8601); none: never expires"
    )


_TOKEN: dict[str, Any] = {
    "id": 3,
    "name": "lab-pixel-7",
    "role": "agent",
    "created_at": "2026-11-25T09:00:00Z",
    "expires_at": None,
    "revoked_at": None,
}


class TokenRead(BaseModel):
    """A token without its secret."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_TOKEN]})

    id: int
    name: str
    role: Role
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreated(TokenRead):
    """A new token: ``token`` is shown this once and never stored."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [{**_TOKEN, "token": "mess_3q2-8VhC0y..."}]},
    )

    token: str


class TokenList(BaseModel):
    """A page of tokens."""

    items: list[TokenRead]
