"""A configuration: early exits with their thresholds, then a terminal exit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mess.space import FINAL


@dataclass(frozen=True)
class ExitRule:
    """One early exit and its policy: leave when ``score[pixel_threshold] >= image_threshold``."""

    id: str
    pixel_threshold: float
    image_threshold: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pixel_threshold": float(self.pixel_threshold),
            "image_threshold": float(self.image_threshold),
        }


@dataclass(frozen=True)
class Configuration:
    """Early exits ``e1..ek`` at strictly increasing depth, then ``terminal``.

    ``terminal`` is ``"final"`` (the original network) or, with truncation, an early exit
    deeper than ``ek`` that is always taken. ``Configuration([], "final")`` is the original
    network; ``Configuration([], "<exit id>")`` a static (truncated) network.
    """

    exits: tuple[ExitRule, ...] = field(default_factory=tuple)
    terminal: str = FINAL

    def __post_init__(self) -> None:
        object.__setattr__(self, "exits", tuple(self.exits))

    @property
    def num_exits(self) -> int:
        """Number of early exits ``k`` (the terminal is not counted)."""
        return len(self.exits)

    @property
    def exit_ids(self) -> list[str]:
        """Every exit a sample may take, in order: the early exits, then the terminal."""
        return [r.id for r in self.exits] + [self.terminal]

    def to_json(self) -> dict[str, Any]:
        """``{"exits": [{"id", "pixel_threshold", "image_threshold"}], "terminal"}``."""
        return {"exits": [r.to_json() for r in self.exits], "terminal": self.terminal}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Configuration:
        """Parse :meth:`to_json`'s object.

        Raises:
            ValueError: a malformed object.
        """
        try:
            exits = tuple(
                ExitRule(str(e["id"]), float(e["pixel_threshold"]), float(e["image_threshold"]))
                for e in raw.get("exits", [])
            )
            terminal = str(raw.get("terminal", FINAL))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"invalid configuration: {exc!r}") from None
        return cls(exits, terminal)

    def __str__(self) -> str:
        parts = [f"{r.id}@({r.pixel_threshold:g},{r.image_threshold:g})" for r in self.exits]
        return " -> ".join([*parts, self.terminal])
