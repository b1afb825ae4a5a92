"""Export-time cut-offs: capacity -> channel cut-offs on a reference window, and what they give
there (expected KPIs, capacity scenarios, the per-office table).

Cut-offs are set on a reference window so that *all* red controls (random + rules + model) make
the red target share, and red + yellow make red + yellow targets (see `pipeline.serve.channels`
for how a declaration reaches a cut-off).

AEO policy. Authorised Economic Operators get their own, stricter cut-offs: on the declarations
not taken by the random draw or a rule, the model selects AEO declarations at ``factor`` times the
rate of the others, and the two rates are solved together so that the overall share stays at the
target: ``q_other = K / (factor x n_aeo + n_other)``, ``q_aeo = factor x q_other``, where ``K`` is
the number of model selections the channel needs.

Per office. With ``per_office``, each office seen in the reference window gets its own cut-offs:
its red rate is ``office_capacity[office] / (its declarations per day)`` (capped at 1) when a
capacity is given, else the global red rate; other channels keep their global rates. An office
absent from the export (a new office) uses the global cut-offs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from pipeline.config import ServeConfig
from pipeline.features.featureset import FeatureSet
from pipeline.ingest.columns import RANDOM
from pipeline.plan import RankingPolicy
from pipeline.serve.channels import (
    CUTOFF_PARTS,
    DEFAULT_CHANNEL,
    aeo_flags,
    assign_channels,
    forced_selection,
)
from pipeline.serve.draw import (
    RANDOM_ALGORITHM,
    key_fingerprint,
    serve_random_key,
    tiebreak_values,
)
from pipeline.serve.model import TargetingModel, shift_log_odds
from pipeline.serve.ranking import rank
from pipeline.serve.selectivity import SCHEMA_VERSION, ThresholdsError
from pipeline.serve.thresholds import Thresholds
from pipeline.timeaxis import Window

Cutoff = dict[str, float | None]  # {"score", "margin", "tiebreak"}; None: nobody reaches it


def _top_k_cutoff(rank: np.ndarray, k: int) -> Cutoff:
    """The ranking key of the k-th highest declaration: exactly k reach it.

    `rank`: (n, 3) array of score, margin and tie-break value.
    """
    if k <= 0 or len(rank) == 0:
        return dict.fromkeys(CUTOFF_PARTS)
    order = np.lexsort((rank[:, 2], rank[:, 1], rank[:, 0]))  # ascending, score first
    row = order[max(len(rank) - k, 0)]
    return {part: float(rank[row, i]) for i, part in enumerate(CUTOFF_PARTS)}


def group_cutoffs(
    rank: np.ndarray,
    forced: np.ndarray,
    aeo: np.ndarray,
    rates: dict[str, float],
    aeo_factor: float,
) -> dict[str, dict[str, Cutoff]]:
    """Cut-offs of one group of declarations (all, or one office) meeting `rates`.

    `forced` rows (random draw, rules) are red already and count towards the red share;
    `rates` are in order of severity. Returns {"cutoffs": ..., "aeo_cutoffs": ...} by channel.
    """
    n = len(rank)
    eligible = ~forced
    is_aeo = eligible & aeo
    other = eligible & ~aeo
    n_aeo, n_other = int(is_aeo.sum()), int(other.sum())
    n_forced = int(forced.sum())
    cutoffs: dict[str, Cutoff] = {}
    aeo_cutoffs: dict[str, Cutoff] = {}
    cumulative = 0.0
    for channel, rate in rates.items():
        cumulative += rate
        wanted = min(max(round(cumulative * n) - n_forced, 0), n_aeo + n_other)
        denominator = aeo_factor * n_aeo + n_other
        k_aeo = min(n_aeo, round(aeo_factor * n_aeo * wanted / denominator)) if denominator else 0
        k_other = min(n_other, wanted - k_aeo)
        k_aeo = min(n_aeo, wanted - k_other)  # other declarations exhausted: AEO take the rest
        cutoffs[channel] = _top_k_cutoff(rank[other], k_other)
        aeo_cutoffs[channel] = _top_k_cutoff(rank[is_aeo], k_aeo)
    return {"cutoffs": cutoffs, "aeo_cutoffs": aeo_cutoffs}


def office_rates(
    office: pd.Series, days: float, serve: ServeConfig
) -> dict[str, dict[str, float | None]]:
    """Per-office rates: red from the office's daily capacity and its daily flow."""
    channels = list(serve.channels)
    flow = office.astype("string").value_counts(dropna=True) / max(days, 1e-9)
    out: dict[str, dict[str, float | None]] = {}
    for name, per_day in flow.items():
        rates: dict[str, float] = dict(serve.channels)
        capacity = serve.office_capacity.get(str(name))
        if capacity is not None and channels:
            rates[channels[0]] = min(1.0, capacity / float(per_day))
        total = sum(rates.values())
        if total > 1.0:  # capacity beyond the flow: the lighter channels shrink
            rates = _cap_rates(rates)
        out[str(name)] = {
            "daily_flow": float(per_day),
            "capacity": capacity,
            **{f"rate.{c}": r for c, r in rates.items()},
        }
    return out


def _cap_rates(rates: dict[str, float]) -> dict[str, float]:
    """Rates in order of severity, each cut so that their sum stays within 1."""
    left = 1.0
    capped: dict[str, float] = {}
    for channel, rate in rates.items():
        capped[channel] = min(rate, left)
        left -= capped[channel]
    return capped


def compute_cutoffs(reference: pd.DataFrame, serve: ServeConfig, days: float) -> dict[str, Any]:
    """The channel part of the export from a scored reference window.

    `reference`: one row per declaration with `declaration_id`, `office`, `aeo`, `score`,
    `margin`, `probability`, `expected_revenue` and the columns the rules name; `days`: the
    window's length, for daily flows and capacities. Returns the `channels`, `cutoffs`, `offices`,
    `aeo`, `random` and `rules` entries of the document.
    """
    if reference.empty:
        raise ThresholdsError("the reference window holds no declarations")
    key = serve_random_key(serve)
    rank = ranking_key(reference, reference["score"], reference["margin"], key)
    drawn, rule = forced_selection(reference, serve.random_rate, key, serve.rules)
    forced = drawn | rule.notna().to_numpy()
    aeo = aeo_flags(reference)
    rates = dict(serve.channels)
    glob = group_cutoffs(rank, forced, aeo, rates, serve.aeo_factor)
    offices: dict[str, Any] = {}
    if serve.per_office:
        office = reference["office"].astype("string").fillna("")
        per_office = office_rates(office, days, serve)
        codes, names = pd.factorize(office)
        for i, name in enumerate(names):
            rows = codes == i
            meta = per_office[str(name)]
            o_rates = {c: float(meta[f"rate.{c}"] or 0.0) for c in rates}
            cuts = group_cutoffs(rank[rows], forced[rows], aeo[rows], o_rates, serve.aeo_factor)
            offices[str(name)] = {
                "rates": o_rates,
                "daily_flow": meta["daily_flow"],
                "capacity": meta["capacity"],
                **cuts,
            }
    return {
        "channels": [{"name": c, "rate": float(r)} for c, r in rates.items()],
        "cutoffs": {"rates": rates, **glob},
        "offices": offices,
        "aeo": {
            "factor": serve.aeo_factor,
            "method": "separate cut-offs; AEO model-selection rate = factor x the others' rate, "
            "overall share kept at the target",
        },
        "random": {
            "rate": serve.random_rate,
            "key_sha256": key_fingerprint(key),
            "key_env": serve.random_key_env,
            "algorithm": RANDOM_ALGORITHM,
            "channel": serve.random_channel,
            "reason": RANDOM,
        },
        "rules": [rule.model_dump(mode="json") for rule in serve.rules],
        "serving": {
            "reasons": serve.reasons,
            "reason_method": serve.reason_method,
            "invalid_channel": serve.invalid_channel,
            "default_channel": DEFAULT_CHANNEL,
        },
    }


def ranking_key(
    declarations: pd.DataFrame, score: ArrayLike, margin: ArrayLike, random_key: str
) -> np.ndarray:
    """(n, 3) ranking key of each declaration: score, margin, tie-break value."""
    return np.column_stack(
        [
            np.asarray(score, dtype=float),
            np.asarray(margin, dtype=float),
            tiebreak_values(declarations["declaration_id"], random_key),
        ]
    )


NO_LEVEL_BASIS = (
    "no interval: the model's level is not anchored on a random stratum, so nothing unbiased "
    "says how far the expected hit rates may be off"
)


def hit_rate_bounds(
    probability: np.ndarray,
    level_shifts: list[float] | None,
    controls: int,
    confidence: float = 0.95,
) -> tuple[list[float] | None, list[float] | None]:
    """How far a channel's hit rate may fall from its expected one, from the level's
    uncertainty (`Calibration.level_shifts`) and, for the range, the luck of `controls` draws.

    Returns (interval, range), each [low, high] or None without level shifts:
    - the interval of the *expected* hit rate: the mean of `probability` under each quantile of
      the level, at the (1 - confidence) / 2 ends;
    - the *prediction* range of the hit rate `controls` controls of the channel will show:
      quantiles of the binomial mixture over the level's quantiles (exact, no sampling).
    Written by hand: scipy has binomial quantiles, not those of a mixture of binomials.
    """
    if not level_shifts or len(probability) == 0:
        return None, None
    from scipy.stats import binom

    p = np.asarray(probability, dtype=float)
    shifts = np.asarray(level_shifts, dtype=float)
    # (quantiles x rows): a handful of quantiles, each a vectorised pass over the rows
    means = np.array([shift_log_odds(p, d).mean() for d in shifts])
    tail = (1.0 - confidence) / 2.0
    # The shifts sit at the level's quantiles (k + 1/2) / K, and the mean is monotone in the
    # shift: the interval's ends are read at the posterior's own tail quantiles (k = 2 and 97 of
    # 100 for 95 %), not at the sample quantiles of the K means (a narrower 94 % interval).
    levels = (np.arange(len(shifts)) + 0.5) / len(shifts)
    interval = np.interp([tail, 1.0 - tail], levels, np.sort(means))
    n = max(int(controls), 1)
    low_hits = int(binom.ppf(tail / 10, n, means.min()))
    high_hits = int(binom.ppf(1.0 - tail / 10, n, means.max()))
    hits = np.arange(low_hits, high_hits + 1)
    cdf = binom.cdf(hits[None, :], n, means[:, None]).mean(axis=0)
    bounds = hits[np.minimum(np.searchsorted(cdf, [tail, 1.0 - tail]), len(hits) - 1)] / n
    return [float(v) for v in interval], [float(v) for v in bounds]


@dataclass(frozen=True)
class Level:
    """The uncertainty of the model's level: log-odds shifts at the quantiles of its posterior
    (`Calibration.level_shifts`; None when not anchored on a random stratum) and what they rest
    on, in words (`ModelInfo.anchoring`)."""

    shifts: list[float] | None = None
    basis: str | None = None


def channel_kpis(
    channels: pd.DataFrame,
    probability: np.ndarray,
    expected_revenue: np.ndarray,
    targets: dict[str, float],
    days: float,
    level: Level | None = None,
) -> dict[str, Any]:
    """Realised shares and expected hit rate / revenue of each channel, from calibrated scores.

    Expected hit rate = mean calibrated probability of the channel's declarations; expected
    revenue = sum of P(hit) x E[revenue | hit] (absent when the model has no revenue part).
    With the level's uncertainty (`level`), each channel also gets the 95 % interval of its
    expected hit rate and the range of the hit rate its controls over a stretch like the
    reference window will show (`hit_rate_bounds`); `level.basis` says what they rest on.

    The random draw is reported on its own (``random``: its channel, share and expected hit
    rate), not mixed into the KPIs of the channel it goes to: a channel's entry holds its
    targeted selections (rules and model), so that its share plus the draw's makes the target
    of the draw's channel. ``warnings`` names every channel whose expected hit rate is above
    that of a more severe one (`channel_order_warnings`).
    """
    level_shifts = level.shifts if level is not None else None
    n = len(channels)
    frame = pd.DataFrame(
        {
            "channel": channels["channel"].to_numpy(),
            "reason": channels["selection_reason"].to_numpy(),
            "p": probability,
            "revenue": expected_revenue,
        }
    )
    has_revenue = bool(np.isfinite(expected_revenue).any())
    drawn = frame["reason"].astype("string").eq(RANDOM).fillna(False).to_numpy(dtype=bool)
    grouped = frame.loc[~drawn].groupby("channel", sort=False)
    out: dict[str, Any] = {}
    for name in [*targets, DEFAULT_CHANNEL]:
        rows = grouped.get_group(name) if name in grouped.groups else frame.iloc[:0]
        entry = _kpi_entry(rows, n, days, level_shifts, has_revenue)
        out[name] = {"target": targets.get(name), **entry}
    random_rows = frame.loc[drawn]
    random_entry = {
        "channel": str(random_rows["channel"].iloc[0]) if len(random_rows) else None,
        **_kpi_entry(random_rows, n, days, level_shifts, has_revenue),
    }
    random_entry.pop("by_reason")
    stated = level.basis if level is not None else None
    basis = (stated or "the level's posterior") if level_shifts else NO_LEVEL_BASIS
    return {
        "declarations": n,
        "days": days,
        "hit_rate_uncertainty": basis,
        "channels": out,
        "random": random_entry,
        "warnings": channel_order_warnings(out),
    }


def _kpi_entry(
    rows: pd.DataFrame, n: int, days: float, level_shifts: list[float] | None, revenue: bool
) -> dict[str, Any]:
    """Share, expected hit rate (with its bounds), hits and revenue of some declarations."""
    interval, spread = hit_rate_bounds(rows["p"].to_numpy(), level_shifts, len(rows))
    entry: dict[str, Any] = {
        "declarations": len(rows),
        "share": len(rows) / n if n else 0.0,
        "per_day": len(rows) / max(days, 1e-9),
        "expected_hit_rate": float(rows["p"].mean()) if len(rows) else None,
        "expected_hit_rate_interval": interval,
        "hit_rate_range": spread,
        "expected_hits": float(rows["p"].sum()),
        "by_reason": {str(k): int(v) for k, v in rows["reason"].value_counts().items()},
    }
    if revenue:
        entry["expected_revenue"] = float(np.nansum(rows["revenue"]))
        entry["expected_revenue_per_control"] = (
            float(np.nanmean(rows["revenue"])) if len(rows) else None
        )
    return entry


def channel_order_warnings(channels: dict[str, Any]) -> list[str]:
    """Channels keep their order when each expected hit rate is at least that of every less
    severe channel (red >= yellow >= green); a warning for each pair that does not, naming
    both rates. Channels without declarations are not judged."""
    rated = [
        (name, float(entry["expected_hit_rate"]))
        for name, entry in channels.items()
        if entry.get("expected_hit_rate") is not None
    ]
    warnings = []
    for i, (severe, high) in enumerate(rated):
        for lighter, rate in rated[i + 1 :]:
            if rate > high:
                warnings.append(
                    f"the channels do not keep their order: {lighter}'s expected hit rate "
                    f"({rate:.1%}) is above {severe}'s ({high:.1%}); a cut-off on a plateau of "
                    f"the calibration or a rule sending low-risk declarations to {severe} puts "
                    "controls where they find less"
                )
    return warnings


def office_table(
    document: dict[str, Any], channels: pd.DataFrame, reference: pd.DataFrame
) -> pd.DataFrame:
    """The export flat, for systems without JSON: one row per office (``*``: the global
    cut-offs, for offices the export does not name) and channel, with the cut-offs (on the
    scorer's score and margin, which only the registered scorer computes) for
    other and AEO declarations and the expected KPIs on the reference window (declarations,
    share of the office's flow, expected hit rate and hits)."""
    names = [c["name"] for c in document["channels"]]
    groups = {"*": document["cutoffs"], **document["offices"]}
    rows = [
        {
            "office": office,
            "channel": name,
            "rate": group.get("rates", {}).get(name),
            **{f"cutoff_{part}": group["cutoffs"][name][part] for part in CUTOFF_PARTS},
            **{f"aeo_cutoff_{part}": group["aeo_cutoffs"][name][part] for part in CUTOFF_PARTS},
        }
        for office, group in groups.items()
        for name in names
    ]
    cuts = pd.DataFrame(rows)
    frame = pd.DataFrame(
        {
            "office": reference["office"].astype("string").fillna("").to_numpy(dtype=object),
            "channel": channels["channel"].to_numpy(dtype=object),
            "p": reference["probability"].to_numpy(dtype=float),
        }
    )
    everyone = frame.assign(office="*")
    both = pd.concat([everyone, frame.loc[frame["office"].isin(list(document["offices"]))]])
    flow = both.groupby("office").size().rename("office_declarations")
    kpis = (
        both.groupby(["office", "channel"])["p"]
        .agg(declarations="size", expected_hit_rate="mean", expected_hits="sum")
        .reset_index()
    )
    table = cuts.merge(kpis, on=["office", "channel"], how="left").merge(
        flow, left_on="office", right_index=True, how="left"
    )
    table["declarations"] = table["declarations"].fillna(0).astype(int)
    table["expected_share"] = table["declarations"] / table["office_declarations"]
    table["expected_hits"] = table["expected_hits"].fillna(0.0)
    return table.drop(columns="office_declarations")


@dataclass(frozen=True)
class Provenance:
    """Where an export's cut-offs come from: the model they belong to, what its score holds
    (`rank_by`, the blend's `revenue_weight`), the feature manifest's fingerprint, the windows,
    the features' config and descriptions, and the serving snapshot."""

    model: dict[str, Any]
    rank_by: str
    manifest_sha256: str
    windows: dict[str, Any]
    features: dict[str, Any]
    snapshot: dict[str, Any]
    revenue_weight: float = 1.0


def new_document(
    policy: dict[str, Any],
    provenance: Provenance,
    kpis: dict[str, Any] | None = None,
    created_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Assemble the export document from its parts (see selectivity.schema.json); `kpis` are
    set later, once the channels are assigned on the reference window."""
    stamp = created_at or dt.datetime.now(dt.UTC)
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": stamp.isoformat(timespec="seconds"),
        "model": provenance.model,
        "rank_by": provenance.rank_by,
        "revenue_weight": float(provenance.revenue_weight),
        "feature_manifest_sha256": provenance.manifest_sha256,
        "windows": provenance.windows,
        "features": provenance.features,
        "snapshot": provenance.snapshot,
        **policy,
        "kpis": kpis if kpis is not None else {},
    }


def manifest_sha256(manifest: pd.DataFrame) -> str:
    """Fingerprint of the feature manifest (names, dtypes, stages, in order)."""
    columns = [c for c in ("name", "dtype", "stage") if c in manifest.columns]
    text = manifest[columns].astype(str).to_csv(index=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Per-channel entries a scenario table leaves out: nested, or bounds it does not compute.
SCENARIO_DROPS = ("by_reason", "expected_hit_rate_interval", "hit_rate_range")


def capacity_scenarios(
    reference: pd.DataFrame, serve: ServeConfig, days: float, red_rates: list[float]
) -> pd.DataFrame:
    """What each red capacity buys on the reference window, channel by channel.

    For each share in `red_rates`, the first (most severe) channel's target is set to it, the
    other channels keep theirs, the cut-offs are computed (`compute_cutoffs`) and the reference
    declarations are assigned as the selectivity system would (`assign_channels`: random draw
    and rules included). `reference` is what `compute_cutoffs` takes. Returns one row per
    scenario and channel, the random draw on a row of its own (channel ``random``, its share
    part of the red target): red_rate, channel, target, declarations, share, per_day,
    expected_hit_rate, expected_hits and, when the model has a revenue part, expected_revenue
    and expected_revenue_per_control (the `channel_kpis` entries).
    """
    if not serve.channels:
        raise ThresholdsError("serve.channels is empty: no channel to vary")
    severe = next(iter(serve.channels))
    score = reference["score"].to_numpy(dtype=float)
    margin = reference["margin"].to_numpy(dtype=float)
    probability = reference["probability"].to_numpy(dtype=float)
    revenue = reference["expected_revenue"].to_numpy(dtype=float)
    rows: list[dict[str, Any]] = []
    for rate in red_rates:  # a handful of scenarios, each vectorised over declarations
        scenario = serve.model_copy(deep=True)
        scenario.channels = {**serve.channels, severe: float(rate)}
        policy = compute_cutoffs(reference, scenario, days)
        channels = assign_channels(
            Thresholds(policy, serve_random_key(serve)), reference, score, margin
        )
        kpis = channel_kpis(channels, probability, revenue, scenario.channels, days)
        for name, entry in kpis["channels"].items():
            figures = {k: v for k, v in entry.items() if k not in SCENARIO_DROPS}
            rows.append({"red_rate": float(rate), "channel": name, **figures})
        if kpis["random"]["declarations"]:  # the draw on its own row (it sits in the red share)
            figures = {k: v for k, v in kpis["random"].items() if k not in SCENARIO_DROPS}
            rows.append({"red_rate": float(rate), **figures, "channel": RANDOM})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ReferenceCutoffs:
    """Cut-offs set on a reference window, and what they give there."""

    window: Window
    scored: pd.DataFrame  # canonical declarations + score, margin, probability, expected_revenue
    policy: dict[str, Any]  # the channel part of the export (`compute_cutoffs`)
    thresholds: Thresholds  # the policy with the serving key, ready to assign channels
    channels: pd.DataFrame  # the reference declarations' channels (`assign_channels`)
    kpis: dict[str, Any]  # the expected KPIs (`channel_kpis`)


def declarations_of(ids: pd.Series, declarations: pd.DataFrame) -> pd.DataFrame:
    """The canonical declarations of `ids`, in their order; refused when one is missing."""
    wanted = ids.astype(str).to_numpy()
    position = pd.Index(declarations["declaration_id"].astype(str)).get_indexer(wanted)
    if (position < 0).any():
        missing = wanted[position < 0][:5]
        raise ValueError(
            f"{(position < 0).sum()} declarations of the feature set are not in the declarations "
            f"table (e.g. {', '.join(missing)}); rebuild the features"
        )
    return declarations.iloc[position].reset_index(drop=True)


def reference_cutoffs(
    model: TargetingModel,
    features: FeatureSet,
    declarations: pd.DataFrame,
    window: Window,
    serve: ServeConfig,
    ranking: RankingPolicy,
) -> ReferenceCutoffs:
    """The one way cut-offs are set, for `targeting export` and the walk-forward replay alike:
    the feature rows of the reference `window`, joined to their canonical `declarations` and
    ranked by `model` (`ranking`: the run plan's, or the config's setting), give the cut-offs
    (`compute_cutoffs`), the channels they assign there and the expected KPIs, with the level's
    uncertainty when the model's level is anchored on a random stratum."""
    rows = window.contains(features.lodged_at)
    if not rows.any():
        raise ValueError(f"no declaration in the reference window {window.start}..{window.end}")
    X = features.X.loc[rows].reset_index(drop=True)
    canonical = declarations_of(features.declaration_id[rows], declarations)
    ranked = rank(model, X, ranking)
    scored = pd.concat([canonical, ranked.frame(X.index)], axis=1)
    policy = compute_cutoffs(scored, serve, window.days)
    thresholds = Thresholds(policy, serve_random_key(serve))
    channels = assign_channels(
        thresholds, scored, scored["score"].to_numpy(), scored["margin"].to_numpy()
    )
    kpis = channel_kpis(
        channels,
        scored["probability"].to_numpy(),
        scored["expected_revenue"].to_numpy(dtype=float),
        thresholds.channels,
        window.days,
        Level(model.calibration.level_shifts, model.info.anchoring),
    )
    return ReferenceCutoffs(window, scored, policy, thresholds, channels, kpis)
