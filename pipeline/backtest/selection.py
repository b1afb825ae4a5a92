"""One step's selection: the candidates a policy sees, the top-k primitives, and the Selection.

A policy fills each office-day's capacity with shares taken in order (random draw, risk criteria,
the model's ranking, exploration); each share sees the rows still free and the capacity still
left (`Candidates.after`), and `select` runs them in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import pandas as pd

RULE, MODEL, EXPLORE, HISTORICAL = "rule", "model", "explore", "historical"


def rank_within(groups: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Rank of each row in its group (0 = first), highest priority first, ties by position."""
    n = len(groups)
    p = np.where(np.isnan(priority), -np.inf, priority)
    order = np.lexsort((np.arange(n), -p, groups))
    sorted_groups = groups[order]
    start = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - start
    return rank


def take_top(
    groups: np.ndarray, priority: np.ndarray, eligible: np.ndarray, slots: np.ndarray
) -> np.ndarray:
    """The eligible rows of highest priority in each group, at most `slots[group]` of them."""
    p = np.where(eligible, priority, -np.inf)
    p = np.where(np.isnan(p), -np.inf, p)
    rank = rank_within(groups, np.where(eligible, p, -np.inf))
    return eligible & np.isfinite(p) & (rank < slots[groups])


def weighted_keys(weight: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Efraimidis-Spirakis keys: the top k keys are a weighted sample without replacement."""
    u = rng.random(len(weight))
    with np.errstate(divide="ignore"):
        return np.where(weight > 0, np.log(u) / np.where(weight > 0, weight, 1.0), -np.inf)


@dataclass(frozen=True)
class Selection:
    """Which rows a policy controls in a step, why, and with which known probability."""

    selected: np.ndarray
    reason: np.ndarray  # random | rule | model | explore | historical | None
    probability: np.ndarray  # known selection probability (random draw), else NaN

    @classmethod
    def none(cls, n: int) -> Selection:
        """No control among `n` rows."""
        return cls(np.zeros(n, dtype=bool), np.full(n, None, dtype=object), np.full(n, np.nan))

    @classmethod
    def of(cls, taken: np.ndarray, reason: str, probability: float | np.ndarray) -> Selection:
        """The rows `taken`, all for one reason, with their known probability (NaN: unknown)."""
        n = len(taken)
        out = cls(taken.copy(), np.full(n, None, dtype=object), np.full(n, np.nan))
        out.reason[taken] = reason
        out.probability[taken] = probability
        return out

    def plus(self, other: Selection) -> Selection:
        """This selection and the rows `other` adds (the two never overlap)."""
        reason = self.reason.copy()
        probability = self.probability.copy()
        reason[other.selected] = other.reason[other.selected]
        probability[other.selected] = other.probability[other.selected]
        return Selection(self.selected | other.selected, reason, probability)


@dataclass(frozen=True)
class Candidates:
    """One step's declarations as a policy sees them.

    `groups`: office-day code per row (0..G-1); `capacity`: controls per office-day; `free`: rows
    no earlier share took; `left`: capacity the earlier shares left; `score`: the model's control
    priority and `probability` its calibrated probability (None without a model, NaN for a row
    the model could not score); `recorded`, `recorded_reason`: what the historical policy did.
    """

    declarations: pd.DataFrame
    groups: np.ndarray
    capacity: np.ndarray
    free: np.ndarray
    left: np.ndarray
    score: np.ndarray | None
    probability: np.ndarray | None
    recorded: np.ndarray
    recorded_reason: np.ndarray

    def after(self, taken: Selection) -> Candidates:
        """The candidates left once `taken` is controlled."""
        used = np.bincount(self.groups[taken.selected], minlength=len(self.capacity))
        return replace(self, free=self.free & ~taken.selected, left=self.left - used)


@dataclass(frozen=True)
class PastControls:
    """What the historical policy did with a step's declarations: which it controlled, and the
    selection reason it recorded for each."""

    controlled: np.ndarray
    reason: np.ndarray


def candidates(
    declarations: pd.DataFrame,
    groups: np.ndarray,
    capacity: np.ndarray,
    *,
    score: np.ndarray | None = None,
    probability: np.ndarray | None = None,
    recorded: PastControls | None = None,
) -> Candidates:
    """A step's candidates before any share: every row free, the whole capacity left."""
    n = len(declarations)
    return Candidates(
        declarations=declarations,
        groups=groups,
        capacity=capacity,
        free=np.ones(n, dtype=bool),
        left=capacity,
        score=score,
        probability=probability,
        recorded=np.zeros(n, dtype=bool) if recorded is None else recorded.controlled,
        recorded_reason=np.full(n, None, dtype=object) if recorded is None else recorded.reason,
    )


class Share(Protocol):
    """A selection policy, or one share of one: the rows it controls among the candidates."""

    def select(self, step: Candidates, rng: np.random.Generator) -> Selection:
        """The rows this share controls among `step.free`, within `step.left` per office-day."""
        ...


def select(step: Candidates, shares: Sequence[Share], rng: np.random.Generator) -> Selection:
    """Fill each office-day's capacity with `shares` in order, each after the previous ones."""
    chosen = Selection.none(len(step.groups))
    for share in shares:
        taken = share.select(step, rng)
        chosen = chosen.plus(taken)
        step = step.after(taken)
    return chosen
