"""The selection policies as small strategies: each says which of a step's candidates it controls.

A `config.backtest.policies` entry becomes `policy_shares`: the historical policy alone, or the
shares a policy fills each office-day's capacity with, in this order: the random draw (a keyed
hash with a known probability, counted inside the capacity), the risk criteria, then the model's
ranking, from which the uncertainty exploration keeps its share back.

Every random share and rule share draws its row order from the policy's generator even when it
takes nothing (no random share, no rules), so each step consumes the same draws whichever shares
a policy has, and the later draws (the exploration's) do not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.backtest.selection import (
    EXPLORE,
    HISTORICAL,
    MODEL,
    RULE,
    Candidates,
    Selection,
    Share,
    take_top,
    weighted_keys,
)
from pipeline.backtest.settings import ReplaySettings
from pipeline.config import PolicyConfig, RuleConfig
from pipeline.ingest.columns import RANDOM
from pipeline.serve.channels import rule_matches
from pipeline.serve.draw import random_draw


@dataclass(frozen=True)
class Historical:
    """The recorded controls replayed as they were; recorded random draws keep their rate."""

    random_rate: float

    def select(self, step: Candidates, rng: np.random.Generator) -> Selection:
        """The rows the historical policy controlled (capacity aside: it is what happened)."""
        chosen = step.recorded
        reason = np.full(len(chosen), None, dtype=object)
        reason[chosen] = HISTORICAL
        recorded_random = step.recorded_reason == RANDOM
        reason[chosen & recorded_random] = RANDOM
        prob = np.where(chosen & recorded_random, self.random_rate, np.nan)
        return Selection(chosen, reason, prob)


@dataclass(frozen=True)
class RandomShare:
    """Declarations drawn at random with probability `rate`, counted inside the capacity.

    Where an office-day drew more than it can control, a random subset of its draws is kept and
    each kept draw records ``rate x kept / drawn`` of that office-day: no more controls than the
    capacity, and the probability stays known.
    """

    rate: float
    key: str

    def select(self, step: Candidates, rng: np.random.Generator) -> Selection:
        """The kept random draws, marked random with their probability."""
        n = len(step.groups)
        ids = step.declarations["declaration_id"]
        drawn = random_draw(ids, self.key, self.rate) if self.rate > 0 else np.zeros(n, dtype=bool)
        drawn = drawn & step.free
        groups, size = step.groups, len(step.capacity)
        drawn_per = np.bincount(groups[drawn], minlength=size)
        kept = take_top(groups, rng.random(n), drawn, step.left)
        kept_per = np.bincount(groups[kept], minlength=size)
        thinned = np.where(drawn_per > 0, kept_per / np.maximum(drawn_per, 1), 1.0)
        return Selection.of(kept, RANDOM, self.rate * thinned[groups[kept]])


@dataclass(frozen=True)
class Rules:
    """The risk criteria: matching declarations, in a random order when they exceed capacity."""

    rules: Sequence[RuleConfig]

    def select(self, step: Candidates, rng: np.random.Generator) -> Selection:
        """The rule matches kept within the capacity left, marked rule (probability 1)."""
        n = len(step.groups)
        hit = (
            rule_matches(step.declarations, list(self.rules)).notna().to_numpy(dtype=bool)
            if self.rules
            else np.zeros(n, dtype=bool)
        )
        ruled = take_top(step.groups, rng.random(n), hit & step.free, step.left)
        return Selection.of(ruled, RULE, 1.0)


@dataclass(frozen=True)
class Exploit:
    """The model's highest control priorities of each office-day (nothing without a model)."""

    def select(self, step: Candidates, rng: np.random.Generator) -> Selection:
        """The best-scored free rows within the capacity left, marked model."""
        if step.score is None:
            return Selection.none(len(step.groups))
        return Selection.of(take_top(step.groups, step.score, step.free, step.left), MODEL, np.nan)


@dataclass(frozen=True)
class Uncertainty:
    """Exploration: `share` of each office-day's capacity (stochastically rounded) kept back
    from the ranking it wraps and drawn among the rest with weight p(1-p), where the model is
    least sure."""

    share: float
    ranking: Exploit

    def select(self, step: Candidates, rng: np.random.Generator) -> Selection:
        """The ranking's picks within the capacity less the quota, then the quota's draws."""
        if step.score is None:
            return Selection.none(len(step.groups))
        wanted = np.floor(self.share * step.capacity + rng.random(len(step.capacity)))
        slots = np.minimum(wanted.astype(np.int64), step.left)
        ranked = self.ranking.select(replace(step, left=step.left - slots), rng)
        if step.probability is None:
            return ranked
        p = np.clip(np.nan_to_num(step.probability, nan=0.0), 0.0, 1.0)
        # A tiny floor keeps every row drawable: isotonic calibration sets whole plateaus to
        # p = 0, and an exploration slot must not stay empty when the uncertain rows run out.
        keys = weighted_keys(p * (1.0 - p) + 1e-12, rng)
        explored = take_top(step.groups, keys, step.free & ~ranked.selected, slots)
        return ranked.plus(Selection.of(explored, EXPLORE, np.nan))


def random_rate(policy: PolicyConfig, capacity_rate: float) -> float:
    """The policy's random draw per declaration: its share of the capacity rate."""
    return policy.random_share * capacity_rate


def policy_shares(policy: PolicyConfig, settings: ReplaySettings) -> list[Share]:
    """The shares that fill each office-day's capacity for `policy`, in order."""
    if policy.kind == "historical":
        return [Historical(settings.recorded_random_rate)]
    applied = settings.rules if policy.rules or policy.kind == "rules" else ()
    shares: list[Share] = [
        RandomShare(
            random_rate(policy, settings.capacity_rate),
            f"{settings.backtest.random_key}:random",
        ),
        Rules(applied),
    ]
    if policy.kind == "model":
        ranking = Exploit()
        shares.append(
            Uncertainty(policy.explore_share, ranking) if policy.explore_share > 0 else ranking
        )
    return shares
