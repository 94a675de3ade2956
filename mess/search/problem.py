"""The search problem: stats and costs as arrays, the configuration space, the canonical
arithmetic of a configuration's metrics, and the naive evaluator.

Canonical arithmetic (the engines repeat it operation for operation, so that equal values
compare equal everywhere and ties break identically):

- path costs: ``hp_0 = 0.0``, ``hp_i = (hp_{i-1} + head[e_i]) + policy[e_i]``; leaving at
  ``e_i`` costs ``reach[e_i] + hp_i``; the terminal ``t`` costs ``reach[t] + (hp_k + head[t])``
  (``reach[final]`` = every segment);
- expected cost: ``c_i`` of the exit taken by all samples if one exit takes them all, else
  ``(((n_1 c_1 + n_2 c_2) + ...) + n_T c_T) / N`` in float64;
- mIoU: :func:`mess.stats.miou_from_sums`;
- p90: ``numpy.percentile(per_sample_costs, 90)`` (linear interpolation between order
  statistics, numpy's default).

Thresholds are compared in float32, as the exit policy does at run time
(:mod:`mess.policy`): a sample leaves at ``e`` iff
``confidence[n, e, tp] >= float32(image_threshold)``.

Ranks order configurations for the tie rules: ``(k, v_1, ..., v_k, terminal)`` with
``v_i = (exit_i * T + tp_i) * G + ti_i`` (stats exit index, pixel-threshold index, image-
threshold grid index) and ``terminal`` the stats exit index (``E`` for ``final``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations, product

import numpy as np

from mess.costs import CostTable, check_compatible
from mess.search.configuration import Configuration, ExitRule
from mess.space import FINAL
from mess.stats import Stats, miou_from_sums

DEFAULT_IMAGE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))

Rank = tuple[int, ...]


@dataclass
class Metrics:
    """What a configuration achieves on the calibration samples.

    Attributes:
        miou: exact mIoU (docs/DESIGN.md, "Exit statistics").
        expected_cost: mean per-sample cost.
        worst_cost: cost of the terminal path.
        p90_cost: 90th percentile of per-sample costs (numpy linear interpolation).
        exit_fractions: fraction of samples leaving at each exit, terminal last.
        counts: number of samples leaving at each exit, terminal last.
    """

    miou: float
    expected_cost: float
    worst_cost: float
    p90_cost: float
    exit_fractions: list[float]
    counts: list[int] = field(default_factory=list)


def canonical_path_costs(
    reach: Sequence[float],
    head: Sequence[float],
    policy: Sequence[float],
    terminal: tuple[float, float],
) -> list[float]:
    """Cost of leaving at each exit of a chain, terminal last (see module docstring).

    Args:
        reach: backbone cost up to each early exit's position.
        head: head cost of each early exit.
        policy: policy cost of each early exit.
        terminal: ``(reach, head)`` of the terminal.
    """
    out: list[float] = []
    hp = 0.0
    for r, h, p in zip(reach, head, policy, strict=True):
        hp = (hp + h) + p
        out.append(r + hp)
    out.append(terminal[0] + (hp + terminal[1]))
    return out


def canonical_expected_cost(counts: Sequence[int], path_costs: Sequence[float]) -> float:
    """Mean per-sample cost from the number of samples leaving at each exit."""
    n = sum(counts)
    s = 0.0
    for k, c in zip(counts, path_costs, strict=True):
        if k == n:
            return c
        s = s + float(k) * c
    return s / n


class Problem:
    """Stats and costs resolved into the arrays the search needs.

    Args:
        stats: validated exit statistics.
        costs: a cost table compatible with ``stats`` (checked here).
    """

    def __init__(self, stats: Stats, costs: CostTable) -> None:
        check_compatible(costs, stats)
        if stats.num_samples < 1:
            raise ValueError("the stats hold no sample")
        self.stats = stats
        self.costs = costs
        self.exit_ids: list[str] = [str(e["id"]) for e in stats.exits]
        self.index = {eid: i for i, eid in enumerate(self.exit_ids)}
        self.num_exits = len(self.exit_ids)
        self.num_samples = stats.num_samples
        self.num_classes = stats.num_classes
        reach = costs.cumulative()
        self.position = np.array([int(e["position_index"]) for e in stats.exits], dtype=np.int64)
        self.reach = np.array([reach[str(e["position"])] for e in stats.exits], dtype=np.float64)
        self.head = np.array([costs.heads[i] for i in self.exit_ids], dtype=np.float64)
        self.policy = np.array([costs.policy[i] for i in self.exit_ids], dtype=np.float64)
        self.reach_final = float(reach[FINAL])
        self.head_final = float(costs.heads[FINAL])
        self.target_sum = stats.target.sum(axis=0, dtype=np.int64)
        self.pixel_thresholds = stats.pixel_thresholds

    def exit_index(self, eid: str) -> int:
        """Stats exit index of an early exit or ``final`` (``E``)."""
        if eid == FINAL:
            return self.num_exits
        try:
            return self.index[eid]
        except KeyError:
            raise ValueError(f"unknown exit {eid!r}") from None

    def terminal_costs(self, t: int) -> tuple[float, float]:
        """``(reach, head)`` of terminal exit index ``t``."""
        if t == self.num_exits:
            return self.reach_final, self.head_final
        return float(self.reach[t]), float(self.head[t])

    def path_costs(self, exits: Sequence[int], terminal: int) -> list[float]:
        """Canonical cost of leaving at each exit of ``exits`` then at ``terminal``."""
        e = list(exits)
        return canonical_path_costs(
            self.reach[e].tolist(),
            self.head[e].tolist(),
            self.policy[e].tolist(),
            self.terminal_costs(terminal),
        )

    def check(self, config: Configuration) -> tuple[list[int], list[int], int]:
        """Resolve a configuration: exit indices, pixel-threshold indices, terminal index.

        Raises:
            ValueError: unknown exit or pixel threshold, or exits not strictly deeper.
        """
        exits = [self.exit_index(r.id) for r in config.exits]
        if self.num_exits in exits:
            raise ValueError("'final' cannot be an early exit")
        tps = []
        for r in config.exits:
            matches = [i for i, t in enumerate(self.pixel_thresholds) if t == r.pixel_threshold]
            if not matches:
                raise ValueError(
                    f"pixel threshold {r.pixel_threshold} is not one of the stats' "
                    f"{self.pixel_thresholds}"
                )
            tps.append(matches[0])
        terminal = self.exit_index(config.terminal)
        depth = [int(self.position[e]) for e in exits]
        if terminal != self.num_exits:
            depth.append(int(self.position[terminal]))
        if any(b <= a for a, b in zip(depth, depth[1:], strict=False)):
            raise ValueError(f"exits must be at strictly increasing positions: {config}")
        return exits, tps, terminal

    def assignment(self, config: Configuration) -> np.ndarray:
        """Index in ``config.exit_ids`` of the exit each sample takes (the naive loop)."""
        exits, tps, _ = self.check(config)
        conf = self.stats.confidence
        out = np.full(self.num_samples, len(exits), dtype=np.int64)
        # walk the exits backwards so that the first exit a sample passes wins
        for i in reversed(range(len(exits))):
            scores = conf[:, exits[i], tps[i]].astype(np.float32)
            out[scores >= np.float32(config.exits[i].image_threshold)] = i
        return out

    def evaluate(self, config: Configuration) -> Metrics:
        """Exact metrics of one configuration, sample by sample (the reference)."""
        exits, _, terminal = self.check(config)
        taken = self.assignment(config)
        stats_index = np.array([*exits, terminal], dtype=np.int64)[taken]
        rows = np.arange(self.num_samples)
        inter = self.stats.intersection[rows, stats_index].sum(axis=0, dtype=np.int64)
        pred = self.stats.predicted[rows, stats_index].sum(axis=0, dtype=np.int64)
        union = pred + self.target_sum - inter
        counts = np.bincount(taken, minlength=len(exits) + 1).tolist()
        path = self.path_costs(exits, terminal)
        per_sample = np.array(path, dtype=np.float64)[taken]
        return Metrics(
            miou=miou_from_sums(inter, union),
            expected_cost=canonical_expected_cost(counts, path),
            worst_cost=path[-1],
            p90_cost=float(np.percentile(per_sample, 90)),
            exit_fractions=[c / self.num_samples for c in counts],
            counts=[int(c) for c in counts],
        )


def evaluate(stats: Stats, costs: CostTable, configuration: Configuration) -> Metrics:
    """Exact metrics of one configuration (the naive reference evaluator).

    Args:
        stats: exit statistics.
        costs: a cost table compatible with ``stats``.
        configuration: the configuration; its pixel thresholds must be the stats' own.

    Returns:
        :class:`Metrics`.
    """
    return Problem(stats, costs).evaluate(configuration)


class SearchSpace:
    """The configurations a search considers (docs/DESIGN.md, "Configurations and their cost").

    Args:
        problem: the prepared stats and costs.
        max_exits: most early exits ``k``.
        image_thresholds: the ``ti`` grid, strictly increasing.
        per_exit_thresholds: one ``(tp, ti)`` pair per exit instead of one shared pair.
        truncation: terminals may be early exits (always taken), and ``k = 0`` includes
            each early exit alone.
        exits: ids of the early exits to consider (default all).
    """

    def __init__(
        self,
        problem: Problem,
        *,
        max_exits: int = 3,
        image_thresholds: Sequence[float] | None = None,
        per_exit_thresholds: bool = False,
        truncation: bool = True,
        exits: Sequence[str] | None = None,
    ) -> None:
        if max_exits < 0:
            raise ValueError("max_exits must be >= 0")
        grid = list(DEFAULT_IMAGE_THRESHOLDS if image_thresholds is None else image_thresholds)
        if not grid:
            raise ValueError("image thresholds must not be empty")
        g32 = np.asarray(grid, dtype=np.float32)
        if not np.all(np.isfinite(g32)) or np.any(np.diff(g32) <= 0):
            raise ValueError("image thresholds must be finite and strictly increasing (float32)")
        self.problem = problem
        self.max_exits = max_exits
        self.image_thresholds = [float(x) for x in grid]
        self.grid32 = g32
        self.per_exit_thresholds = per_exit_thresholds
        self.truncation = truncation
        if exits is None:
            chosen = list(range(problem.num_exits))
        else:
            chosen = sorted({problem.exit_index(e) for e in exits})
            if problem.num_exits in chosen:
                raise ValueError("'final' is always the terminal; do not list it in exits")
        self.exits: list[int] = chosen
        self.num_tp = len(problem.pixel_thresholds)
        self.num_ti = len(grid)

    # ranks -------------------------------------------------------------------------------
    def rule_code(self, exit_index: int, tp: int, ti: int) -> int:
        return (exit_index * self.num_tp + tp) * self.num_ti + ti

    def decode_rule(self, code: int) -> tuple[int, int, int]:
        e, rest = divmod(code, self.num_tp * self.num_ti)
        tp, ti = divmod(rest, self.num_ti)
        return e, tp, ti

    def rank(self, config: Configuration) -> Rank:
        """The configuration's rank for the tie rules (module docstring)."""
        exits, tps, terminal = self.problem.check(config)
        codes = []
        for e, tp, rule in zip(exits, tps, config.exits, strict=True):
            hits = [j for j, t in enumerate(self.image_thresholds) if t == rule.image_threshold]
            if not hits:
                raise ValueError(f"image threshold {rule.image_threshold} is not on the grid")
            codes.append(self.rule_code(e, tp, hits[0]))
        return (len(exits), *codes, terminal)

    def configuration(self, rank: Sequence[int]) -> Configuration:
        """The configuration of a rank."""
        k = int(rank[0])
        rules = []
        for code in rank[1 : 1 + k]:
            e, tp, ti = self.decode_rule(int(code))
            rules.append(
                ExitRule(
                    self.problem.exit_ids[e],
                    self.problem.pixel_thresholds[tp],
                    self.image_thresholds[ti],
                )
            )
        t = int(rank[1 + k])
        terminal = FINAL if t == self.problem.num_exits else self.problem.exit_ids[t]
        return Configuration(tuple(rules), terminal)

    def tails(self, ranks: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """p90 cost and samples per exit taken of many configurations, as :meth:`Problem.evaluate`
        computes them, bit for bit, without a Python loop over the configurations.

        Args:
            ranks: ``(P, max_exits + 2)`` rank rows ``[k, v_1..v_k, -1.., terminal]``.
            block: configurations at a time (memory: ``block x N`` per-sample costs).

        Returns:
            ``p90`` ``(P,)`` float64 and ``counts`` ``(P, max_exits + 1)`` int64, -1 padded.
        """
        p = self.problem
        n_rows = len(ranks)
        width = self.max_exits + 1
        p90 = np.zeros(n_rows)
        counts = np.full((n_rows, width), -1, dtype=np.int64)
        conf = p.stats.confidence.astype(np.float32, copy=False)
        for a in range(0, n_rows, block):
            r = np.asarray(ranks[a : a + block], dtype=np.int64)
            k = r[:, 0]
            rows = np.arange(len(r))
            # the exit each sample takes: walking backwards, the first exit passed wins
            taken = np.repeat(k[:, None], p.num_samples, axis=1)
            for q in reversed(range(self.max_exits)):
                on = q < k
                e, rest = np.divmod(np.where(on, r[:, 1 + q], 0), self.num_tp * self.num_ti)
                tp, ti = np.divmod(rest, self.num_ti)
                scores, thresholds = conf[:, e, tp].T, self.grid32[ti][:, None]
                passes = scores >= thresholds
                taken[passes & on[:, None]] = q
            # canonical path costs, column q for exit q and column k for the terminal
            hp = np.zeros(len(r))
            path = np.zeros((len(r), width))
            for q in range(self.max_exits):
                on = q < k
                e, _ = np.divmod(np.where(on, r[:, 1 + q], 0), self.num_tp * self.num_ti)
                hp = np.where(on, (hp + p.head[e]) + p.policy[e], hp)
                path[:, q] = p.reach[e] + hp
            t = r[:, -1]
            final = t == p.num_exits
            safe = np.where(final, 0, t)
            t_reach = np.where(final, p.reach_final, p.reach[safe])
            t_head = np.where(final, p.head_final, p.head[safe])
            path[rows, k] = t_reach + (hp + t_head)
            p90[a : a + len(r)] = np.percentile(path[rows[:, None], taken], 90, axis=1)
            for q in range(width):
                counts[a : a + len(r), q] = np.where(q <= k, (taken == q).sum(axis=1), -1)
        return p90, counts

    # enumeration -------------------------------------------------------------------------
    def chains(self, k: int) -> Iterator[tuple[int, ...]]:
        """Every chain of ``k`` considered exits at strictly increasing positions."""
        pos = self.problem.position
        for chain in combinations(sorted(self.exits, key=lambda e: (pos[e], e)), k):
            if all(pos[a] < pos[b] for a, b in zip(chain, chain[1:], strict=False)):
                yield chain

    def terminals(self, chain: Sequence[int]) -> list[int]:
        """Terminal exit indices allowed after ``chain`` (``final`` = ``E`` last)."""
        out = []
        if self.truncation:
            deepest = max((int(self.problem.position[e]) for e in chain), default=-1)
            out = [e for e in self.exits if int(self.problem.position[e]) > deepest]
        return [*out, self.problem.num_exits]

    def ranks(self) -> Iterator[Rank]:
        """Every configuration's rank, by plain nested loops (the brute force's order)."""
        yield (0, self.problem.num_exits)
        if self.truncation:
            for e in self.exits:
                yield (0, e)
        pairs = list(product(range(self.num_tp), range(self.num_ti)))
        for k in range(1, self.max_exits + 1):
            for chain in self.chains(k):
                terms = self.terminals(chain)
                choices: Iterable[tuple[tuple[int, int], ...]]
                if self.per_exit_thresholds:
                    choices = product(pairs, repeat=k)
                else:
                    choices = ((p,) * k for p in pairs)
                for th in choices:
                    codes = tuple(
                        self.rule_code(e, tp, ti) for e, (tp, ti) in zip(chain, th, strict=True)
                    )
                    for t in terms:
                        yield (k, *codes, t)

    def size(self) -> int:
        """Number of configurations, counted without enumerating them."""
        pos = self.problem.position
        order = sorted(self.exits, key=lambda e: (pos[e], e))
        per_rule = self.num_tp * self.num_ti
        total = 1 + (len(order) if self.truncation else 0)
        # chains ending at each exit, by length, weighted by their terminals' count
        ending = {e: [0] * (self.max_exits + 1) for e in order}
        if self.max_exits == 0:
            return total
        for e in order:
            ending[e][1] = 1
            for d in order:
                if pos[d] < pos[e]:
                    for k in range(2, self.max_exits + 1):
                        ending[e][k] += ending[d][k - 1]
        for e in order:
            deeper = sum(1 for x in order if pos[x] > pos[e]) if self.truncation else 0
            for k in range(1, self.max_exits + 1):
                th = per_rule**k if self.per_exit_thresholds else per_rule
                total += ending[e][k] * (deeper + 1) * th
        return total
