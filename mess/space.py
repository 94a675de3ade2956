"""The exit-head search space (torch-free).

A head configuration (MESS poster) has four choices:

- ``crm``: a channel reduction module (1x1 conv) first, or not;
- ``blocks``: 0 to 4 extra trainable residual blocks;
- ``rdi``: rapid dilation increase in those blocks (meaningless with 0 blocks, so off there);
- ``head``: the segmentation head, ``fcn`` or ``dlv3`` (DeepLabV3's ASPP).

That gives 2 x (1 + 4 x 2) x 2 = 36 heads per position. Canonical id:
``crm1-b2-rdi1-dlv3``. A candidate exit is ``<position>/<head id>``; the original model's own
head is the exit ``final``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

HeadKind = Literal["fcn", "dlv3"]
FINAL = "final"
MAX_BLOCKS = 4

_HEAD_ID = re.compile(r"^crm(?P<crm>[01])-b(?P<blocks>[0-4])-rdi(?P<rdi>[01])-(?P<head>fcn|dlv3)$")


@dataclass(frozen=True, order=True)
class HeadConfig:
    """One exit-head architecture; ``str()`` gives its canonical id."""

    crm: bool
    blocks: int
    rdi: bool
    head: HeadKind

    def __post_init__(self) -> None:
        if not 0 <= self.blocks <= MAX_BLOCKS:
            raise ValueError(f"blocks must be in 0..{MAX_BLOCKS}, got {self.blocks}")
        if self.rdi and self.blocks == 0:
            raise ValueError("rdi needs at least one extra block")
        if self.head not in ("fcn", "dlv3"):
            raise ValueError(f"head must be 'fcn' or 'dlv3', got {self.head!r}")

    @property
    def id(self) -> str:
        return f"crm{int(self.crm)}-b{self.blocks}-rdi{int(self.rdi)}-{self.head}"

    def __str__(self) -> str:
        return self.id

    @classmethod
    def parse(cls, head_id: str) -> HeadConfig:
        """Parse a canonical id such as ``crm1-b2-rdi1-dlv3``."""
        m = _HEAD_ID.match(head_id)
        if m is None:
            raise ValueError(
                f"invalid head id {head_id!r}: expected crm<0|1>-b<0-4>-rdi<0|1>-<fcn|dlv3>"
            )
        return cls(
            crm=m["crm"] == "1",
            blocks=int(m["blocks"]),
            rdi=m["rdi"] == "1",
            head=m["head"],  # type: ignore[arg-type]
        )


def full_space() -> list[HeadConfig]:
    """All 36 head configurations, in canonical order."""
    heads = []
    for crm in (False, True):
        for blocks in range(MAX_BLOCKS + 1):
            for rdi in (False, True) if blocks else (False,):
                for head in ("fcn", "dlv3"):
                    heads.append(HeadConfig(crm, blocks, rdi, head))
    return heads


# A few light heads, enough to exercise every mechanism on 2 CPU cores.
TINY_SPACE = ("crm1-b0-rdi0-fcn", "crm1-b1-rdi0-fcn", "crm1-b1-rdi1-dlv3")

NAMED_SPACES = ("full", "tiny")


def resolve_space(space: str | Iterable[str]) -> list[HeadConfig]:
    """A named space (``full``, ``tiny``), a comma list or an iterable of head ids.

    Returns the heads in canonical order, without duplicates.
    """
    if isinstance(space, str):
        if space == "full":
            return full_space()
        if space == "tiny":
            ids: Sequence[str] = TINY_SPACE
        else:
            ids = [s.strip() for s in space.split(",") if s.strip()]
            if not ids:
                raise ValueError(f"unknown head space {space!r}: use full, tiny or head ids")
    else:
        ids = list(space)
    heads = sorted({HeadConfig.parse(h) for h in ids}, key=_canonical_key)
    if not heads:
        raise ValueError("the head space is empty")
    return heads


def _canonical_key(h: HeadConfig) -> tuple[int, int, int, int]:
    return (int(h.crm), h.blocks, int(h.rdi), 0 if h.head == "fcn" else 1)


def exit_id(position: str, head: HeadConfig | str) -> str:
    """The candidate exit id ``<position>/<head id>``."""
    return f"{position}/{head}"


def split_exit_id(eid: str) -> tuple[str, HeadConfig]:
    """Split ``<position>/<head id>`` into its position name and head configuration."""
    if eid == FINAL:
        raise ValueError("'final' is the original head, not a candidate exit")
    position, sep, head = eid.rpartition("/")
    if not sep or not position:
        raise ValueError(f"invalid exit id {eid!r}: expected <position>/<head id>")
    return position, HeadConfig.parse(head)
