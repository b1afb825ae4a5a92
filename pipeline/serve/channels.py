"""What serving needs to give each declaration its channel: the random draw, the rules, the
model's cut-offs (`assign_channels`), as in docs/selectivity.md.

How a declaration gets its channel (the same code runs at export time on the reference window
and at serving time on new declarations, `assign_channels`):

1. **Random draw** (compliance measurement): selected when the keyed hash of its declaration id
   falls below ``random.rate`` (`random_draw`, algorithm below). Channel ``random.channel``
   (red), selection reason ``random``, selection probability = the rate. The draw is checked
   first so that the random stratum is a uniform sample of every declaration, rules included.
2. **Mandatory rules** (risk criteria): a declaration whose column matches one of the rule's
   values (or starts with one of its prefixes) goes red, reason = the rule's name.
3. **The model**: the channels are taken in order of severity (red, then yellow...); a
   declaration goes to the first channel whose cut-off it reaches, else to green.

Cut-offs. Each cut-off is a triple ``(score, margin, tiebreak)``, compared lexicographically: a
declaration reaches it when its score is higher; or equal with a higher booster margin; or equal
in both with a tie-break value at least as high. The margin orders declarations exactly as the
calibrated probability does (calibration is monotone) and breaks the ties that isotonic
calibration creates on its plateaus; the tie-break value, ``(h >> 11) / 2^53`` with ``h`` the
keyed hash below computed with the key ``<random key>/tie-break``, settles what is left (a model
with few distinct scores) reproducibly, so shares are met to the declaration. ``null``: nobody.
Cut-offs are set on a reference window so that *all* red controls (random + rules + model) make
the red target share, and red + yellow make red + yellow targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import RuleConfig
from pipeline.ingest.columns import RANDOM
from pipeline.serve.draw import random_draw, tiebreak_values
from pipeline.serve.selectivity import ChannelPolicy, Cutoff, ThresholdsError
from pipeline.serve.thresholds import Thresholds

DEFAULT_CHANNEL = "green"
MODEL_REASON = "model"
CUTOFF_PARTS = ("score", "margin", "tiebreak")


def rule_matches(declarations: pd.DataFrame, rules: list[RuleConfig]) -> pd.Series:
    """The name of the first rule each declaration matches (string dtype, <NA> when none)."""
    matched = pd.Series(pd.NA, index=declarations.index, dtype="string")
    for rule in reversed(rules):  # the first rule in the list wins: assign it last
        if rule.column not in declarations.columns:
            raise ThresholdsError(
                f"rule {rule.name!r}: column {rule.column!r} is not in the declarations "
                f"(columns: {', '.join(map(str, declarations.columns))})"
            )
        text = declarations[rule.column].astype("string")
        hit = text.isin(rule.values).fillna(False)
        if rule.prefix:
            hit |= text.str.startswith(tuple(rule.prefix)).fillna(False)
        matched = matched.mask(hit.to_numpy(dtype=bool), rule.name)
    return matched


def _reaches(rank: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """True where the ranking key >= the cut-off, lexicographically; NaN cut-offs: nobody.

    `rank` and `cut`: (n, 3) arrays of score, margin and tie-break value.
    """
    score, margin, tie = rank[:, 0], rank[:, 1], rank[:, 2]
    cs, cm, ct = cut[:, 0], cut[:, 1], cut[:, 2]
    return (score > cs) | ((score == cs) & ((margin > cm) | ((margin == cm) & (tie >= ct))))


def forced_selection(
    declarations: pd.DataFrame, random_rate: float, random_key: str, rules: list[RuleConfig]
) -> tuple[np.ndarray, pd.Series]:
    """Random stratum mask, and the first matching rule's name (<NA> when none)."""
    drawn = random_draw(declarations["declaration_id"], random_key, random_rate)
    return drawn, rule_matches(declarations, rules)


def aeo_flags(declarations: pd.DataFrame) -> np.ndarray:
    """True for the declarations of Authorised Economic Operators (a missing flag is false)."""
    if "aeo" not in declarations.columns:
        return np.zeros(len(declarations), dtype=bool)
    flags = declarations["aeo"].astype("boolean").fillna(False)
    return np.asarray(flags.to_numpy(dtype=bool))


def _part(cut: Cutoff, part: str) -> float:
    value = getattr(cut, part)
    return np.nan if value is None else float(value)


def _cutoff_arrays(
    policy: ChannelPolicy, channel: str, office: pd.Series, aeo: np.ndarray
) -> np.ndarray:
    """Per-row cut-off of a channel, (n, 3): the office's when it has one, else the global one."""
    glob = policy.cutoffs
    cut = np.column_stack(
        [
            np.where(
                aeo,
                _part(glob.aeo_cutoffs[channel], part),
                _part(glob.cutoffs[channel], part),
            )
            for part in CUTOFF_PARTS
        ]
    )
    offices = policy.offices
    if offices:
        known = office.isin(list(offices)).to_numpy(dtype=bool)
        if known.any():
            for i, part in enumerate(CUTOFF_PARTS):
                other = office.map({o: _part(g.cutoffs[channel], part) for o, g in offices.items()})
                special = office.map(
                    {o: _part(g.aeo_cutoffs[channel], part) for o, g in offices.items()}
                )
                per_row = np.where(aeo, special.to_numpy(dtype=float), other.to_numpy(dtype=float))
                cut[known, i] = per_row[known]
    return cut


def assign_channels(
    thresholds: Thresholds,
    declarations: pd.DataFrame,
    score: np.ndarray,
    margin: np.ndarray,
) -> pd.DataFrame:
    """Channel, selection reason and selection probability of each declaration.

    `declarations` holds `declaration_id`, `office`, `aeo` and the columns the rules name,
    row-aligned with `score` and `margin`. Returns a frame on the same index.
    """
    policy = thresholds.policy
    office = declarations["office"].astype("string").fillna("")
    aeo = aeo_flags(declarations)
    channel = np.full(len(declarations), thresholds.default_channel, dtype=object)
    open_rows = np.ones(len(declarations), dtype=bool)
    ids = declarations["declaration_id"]
    key = thresholds.key
    # The tie-break value is hashed only for rows whose score and margin equal a cut-off's.
    rank = np.column_stack(
        [np.asarray(score, float), np.asarray(margin, float), np.full(len(ids), np.nan)]
    )
    for name in thresholds.channels:
        cut = _cutoff_arrays(policy, name, office, aeo)
        tied = (rank[:, 0] == cut[:, 0]) & (rank[:, 1] == cut[:, 1]) & np.isnan(rank[:, 2])
        if tied.any():
            rank[tied, 2] = tiebreak_values(ids[tied], key)
        reached = open_rows & _reaches(rank, cut)
        channel[reached] = name
        open_rows &= ~reached
    reason = np.full(len(declarations), MODEL_REASON, dtype=object)
    reason[open_rows] = None
    probability = np.full(len(declarations), np.nan)
    drawn, rule = forced_selection(declarations, policy.random.rate, key, policy.rules)
    ruled = rule.notna().to_numpy(dtype=bool) & ~drawn
    red = next(iter(thresholds.channels), thresholds.default_channel)
    channel[ruled] = red
    reason[ruled] = rule.to_numpy(dtype=object)[ruled]
    probability[ruled] = 1.0
    channel[drawn] = policy.random.channel
    reason[drawn] = RANDOM
    probability[drawn] = policy.random.rate
    return pd.DataFrame(
        {"channel": channel, "selection_reason": reason, "selection_probability": probability},
        index=declarations.index,
    )
