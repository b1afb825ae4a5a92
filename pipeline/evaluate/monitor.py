"""Drift of features and scores, and the model's performance measured on the random stratum.

Pure functions of DataFrames: `jobs/monitor.py` reads the feature set and the model, calls
`monitor_report`, and writes the report.

Drift is measured between a **reference** window (the rows the model was trained on) and a
**recent** window (the last days of declarations):

- **PSI**, population stability index (`evaluate.drift.psi`, the project's one implementation,
  also the report's): ``sum((q - p) ln(q / p))`` over bins, where ``p`` and ``q`` are the
  reference and recent shares of a bin. The usual bands: **< 0.1 stable, 0.1-0.25 moderate
  shift, > 0.25 major shift** (``monitor.psi_warn`` / ``monitor.psi_alarm``).
- For numbers, two alternatives that need no binning: the **Kolmogorov-Smirnov** statistic (the
  largest gap between the two cumulative distributions, 0..1) and the **Wasserstein** distance
  (the mean shift needed to turn one distribution into the other), reported raw and in reference
  standard deviations so that one threshold fits every feature. ``monitor.metric`` chooses the
  statistic that sets a numeric feature's level; categories always use PSI.

Performance: the random stratum (`FeatureSet.stratum`: the random draw with a recorded
probability) is a uniform sample of all declarations, so its hit rate estimates the
population's hit rate without the selection bias of rule and model controls. Its interval
(Wilson or Clopper-Pearson) is compared with the hit rate the model expects on the same
declarations (the mean calibrated probability); an expected rate outside the interval means the
model no longer describes the stream.

Levels: ``ok`` < ``warn`` < ``alarm``. The report's level is the highest of the score's, the
judged features' and the performance check's.

What is judged (defaults of `MonitorConfig`, every statistic is reported either way): the score
and the declarations' own attributes (stage ``raw``). Derived features are running statistics
of the stream (profile hit rates and counts, reference prices and their support, trader tenure):
measured against a past window they move by construction, as the store matures and as the
selection policy changes which outcomes exist, so on a simulated stream nearly all of them pass
PSI 0.25 within months with no change in the declarations at all. Judging them would make the
alarm meaningless; a reviewer reads them in ``drift.csv``.

What it can see: an emerging scheme is *concept* drift (the same declarations, a new meaning),
visible in the score once the profiles learn of it, and in the random stratum's hit rate once
the stratum is large enough. With 0.5 % random controls (about 40 a month on the default
stream) a monthly window cannot tell a hit rate of 3 % from 4 %: that needs thousands of random
controls. `tests/evaluate/test_monitor_job.py` shows the alarm on a scheme of 4 % of the flow
with a 5 % stratum, and the same windows quiet on the same stream without the scheme.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from pipeline.config import MonitorConfig
from pipeline.evaluate.drift import is_numeric, psi
from pipeline.timeaxis import Window, after_last

Level = Literal["ok", "warn", "alarm"]
LEVELS: tuple[Level, ...] = ("ok", "warn", "alarm")
SCORE = "score"

DRIFT_COLUMNS = [
    "variable",
    "role",
    "kind",
    "stage",
    "rows_reference",
    "rows_recent",
    "missing_reference",
    "missing_recent",
    "psi",
    "ks",
    "ks_pvalue",
    "wasserstein",
    "wasserstein_std",
    "metric",
    "value",
    "judged",
    "level",
]


def worst(levels: Iterable[str]) -> Level:
    """The highest level among `levels` (``ok`` when there are none)."""
    rank = max((LEVELS.index(level) for level in levels), default=0)
    return LEVELS[rank]


def reaches(level: str, threshold: str) -> bool:
    """Whether `level` is at or above `threshold` (``never`` is never reached)."""
    if threshold == "never":
        return False
    return LEVELS.index(level) >= LEVELS.index(threshold)


def band(value: float, warn: float, alarm: float) -> Level:
    """``alarm`` above `alarm`, ``warn`` above `warn`, else ``ok`` (NaN: ``ok``)."""
    if np.isnan(value):
        return "ok"
    if value > alarm:
        return "alarm"
    return "warn" if value > warn else "ok"


@dataclass(frozen=True)
class Distance:
    """Binning-free distances between two samples of a number (NaN where a side is empty)."""

    ks: float
    ks_pvalue: float
    wasserstein: float
    wasserstein_std: float


def distances(reference: ArrayLike, recent: ArrayLike) -> Distance:
    """Kolmogorov-Smirnov statistic (asymptotic p-value) and Wasserstein distance, finite values.

    ``wasserstein_std`` divides the distance by the reference's standard deviation, so one
    threshold fits features of any unit (infinite when a constant reference moved).
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(recent, dtype=float)
    ref = ref[np.isfinite(ref)]
    cur = cur[np.isfinite(cur)]
    if len(ref) == 0 or len(cur) == 0:
        nan = float("nan")
        return Distance(nan, nan, nan, nan)
    ks = stats.ks_2samp(ref, cur, method="asymp")
    distance = float(stats.wasserstein_distance(ref, cur))
    spread = float(ref.std())
    scaled = distance / spread if spread > 0 else 0.0 if distance == 0 else float("inf")
    return Distance(float(ks.statistic), float(ks.pvalue), distance, scaled)


def _thresholds(config: MonitorConfig, metric: str) -> tuple[float, float]:
    if metric == "ks":
        return config.ks_warn, config.ks_alarm
    if metric == "wasserstein":
        return config.wasserstein_warn, config.wasserstein_alarm
    return config.psi_warn, config.psi_alarm


@dataclass(frozen=True)
class Variable:
    """A monitored variable: a feature (its manifest stage) or the score, and whether its drift
    may raise a level (`is_judged`)."""

    name: str
    role: str = "feature"
    stage: str = ""
    judged: bool = True


def drift_row(
    variable: Variable, reference: pd.Series, recent: pd.Series, config: MonitorConfig
) -> dict[str, object]:
    """Every drift statistic of one variable, the statistic that judges it, and its level."""
    numeric = is_numeric(reference) and is_numeric(recent)
    value_psi = psi(reference, recent, config.bins, config.max_levels)
    nan = float("nan")
    dist = (
        distances(reference.to_numpy(dtype=float), recent.to_numpy(dtype=float))
        if numeric
        else Distance(nan, nan, nan, nan)
    )
    metric = config.metric if numeric else "psi"
    value = {
        "psi": value_psi,
        "ks": dist.ks,
        "wasserstein": dist.wasserstein_std,
    }[metric]
    enough = min(len(reference), len(recent)) >= config.min_rows
    judged = variable.judged and enough
    level = band(value, *_thresholds(config, metric)) if judged else "ok"
    return {
        "variable": variable.name,
        "role": variable.role,
        "kind": "numeric" if numeric else "category",
        "stage": variable.stage,
        "rows_reference": len(reference),
        "rows_recent": len(recent),
        "missing_reference": float(reference.isna().mean()) if len(reference) else nan,
        "missing_recent": float(recent.isna().mean()) if len(recent) else nan,
        "psi": value_psi,
        "ks": dist.ks,
        "ks_pvalue": dist.ks_pvalue,
        "wasserstein": dist.wasserstein,
        "wasserstein_std": dist.wasserstein_std,
        "metric": metric,
        "value": value,
        "judged": judged,
        "level": level,
    }


def drift_table(
    reference: pd.DataFrame,
    recent: pd.DataFrame,
    config: MonitorConfig,
    *,
    stages: dict[str, str] | None = None,
    reference_score: ArrayLike | None = None,
    recent_score: ArrayLike | None = None,
) -> pd.DataFrame:
    """Tidy drift table: one row per feature shared by both windows, and one for the score.

    `stages` maps a feature to its stage (from the feature manifest); features of
    ``config.exclude_stages`` or matching a pattern of ``config.exclude_features`` are reported, not
    judged. Rows are ordered score first, then by level and value, highest first.
    """
    stages = stages or {}
    rows = []
    if reference_score is not None and recent_score is not None:
        rows.append(
            drift_row(
                Variable(SCORE, role="score", stage="model"),
                pd.Series(np.asarray(reference_score, dtype=float)),
                pd.Series(np.asarray(recent_score, dtype=float)),
                config,
            )
        )
    for column in reference.columns:
        if column not in recent.columns:
            continue
        stage = str(stages.get(str(column), ""))
        rows.append(
            drift_row(
                Variable(str(column), stage=stage, judged=is_judged(str(column), stage, config)),
                reference[column],
                recent[column],
                config,
            )
        )
    table = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    if table.empty:
        return table
    table["_role"] = (table["role"] != "score").astype(int)
    table["_level"] = -table["level"].map(LEVELS.index)
    table["_value"] = -table["value"].fillna(-np.inf)
    table = table.sort_values(["_role", "_level", "_value", "variable"], kind="stable")
    return table.drop(columns=["_role", "_level", "_value"]).reset_index(drop=True)


@dataclass(frozen=True)
class StratumCheck:
    """The random stratum's hit rate, its interval, and the rate the model expects there."""

    rows: int
    hits: int
    hit_rate: float
    low: float
    high: float
    expected_hit_rate: float
    method: str
    confidence: float
    level: Level

    def as_dict(self) -> dict[str, object]:
        """Plain values, for JSON and MLflow."""
        return dict(self.__dict__)


def proportion_interval(
    hits: int, rows: int, confidence: float = 0.95, method: str = "wilson"
) -> tuple[float, float]:
    """Wilson score or Clopper-Pearson (exact) interval of a binomial proportion."""
    if rows == 0:
        return float("nan"), float("nan")
    kind = "exact" if method == "clopper_pearson" else "wilson"
    interval = stats.binomtest(int(hits), int(rows)).proportion_ci(confidence, method=kind)
    return float(interval.low), float(interval.high)


def random_stratum_check(
    hit: ArrayLike,
    stratum: ArrayLike,
    expected: ArrayLike,
    config: MonitorConfig,
    known: ArrayLike | None = None,
) -> StratumCheck:
    """Hit rate of the random stratum (rows with a known label) against the model's expectation.

    `stratum` marks the random stratum (`FeatureSet.stratum`), `hit` is 1/0 (NaN where
    unknown), `expected` the model's calibrated probability, `known`
    restricts to labels known at the end of the window. Level ``config.performance_level`` when
    the expected rate falls outside the interval, ``ok`` otherwise or with no random control.
    """
    y = np.asarray(hit, dtype=float)
    rows = np.asarray(stratum, dtype=bool) & np.isfinite(y)
    if known is not None:
        rows &= np.asarray(known, dtype=bool)
    n = int(rows.sum())
    hits = int(y[rows].sum())
    p = np.asarray(expected, dtype=float)
    expected_rate = float(p[rows].mean()) if n else float("nan")
    low, high = proportion_interval(hits, n, config.confidence, config.interval)
    outside = n > 0 and not low <= expected_rate <= high
    level: Level = config.performance_level if outside else "ok"
    return StratumCheck(
        rows=n,
        hits=hits,
        hit_rate=hits / n if n else float("nan"),
        low=low,
        high=high,
        expected_hit_rate=expected_rate,
        method=config.interval,
        confidence=config.confidence,
        level=level,
    )


@dataclass(frozen=True)
class MonitorReport:
    """Drift table, random-stratum check and the overall level of one recent window."""

    drift: pd.DataFrame
    stratum: StratumCheck
    level: Level
    reference: Window
    recent: Window

    def headline(self) -> str:
        """One line for a scheduler's log."""
        judged = self.drift[self.drift["judged"] & (self.drift["role"] == "feature")]
        counts = judged["level"].value_counts()
        score = self.drift.loc[self.drift["role"] == "score", "level"]
        s = self.stratum
        return (
            f"monitor {self.level.upper()}: recent {self.recent.start:%Y-%m-%d}.."
            f"{self.recent.end:%Y-%m-%d} vs reference {self.reference.start:%Y-%m-%d}.."
            f"{self.reference.end:%Y-%m-%d}; score {score.iloc[0] if len(score) else 'n/a'}; "
            f"features alarm {int(counts.get('alarm', 0))}, warn {int(counts.get('warn', 0))}; "
            + (
                f"random stratum {s.hits}/{s.rows} = {s.hit_rate:.3f} "
                f"[{s.low:.3f}, {s.high:.3f}] vs expected {s.expected_hit_rate:.3f} ({s.level})"
                if s.rows
                else "no random stratum in the recent window (no unbiased performance check)"
            )
        )

    def to_markdown(self, top: int = 20) -> str:
        """A short human report: level, random stratum, score and the most drifted features."""
        s = self.stratum
        shown = self.drift.head(top)
        lines = [
            f"# Monitoring report: {self.level.upper()}",
            "",
            f"- reference window: {self.reference.start} .. {self.reference.end}",
            f"- recent window: {self.recent.start} .. {self.recent.end}",
            "- PSI bands: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift",
            "",
            "## Random stratum (unbiased performance estimate)",
            "",
            f"{s.hits} hits in {s.rows} random controls: hit rate {s.hit_rate:.4f}, "
            f"{s.confidence:.0%} {s.method} interval [{s.low:.4f}, {s.high:.4f}]; "
            f"the model expects {s.expected_hit_rate:.4f} -> **{s.level}**",
            "",
            f"## Drift (top {len(shown)} of {len(self.drift)})",
            "",
            "| variable | role | stage | psi | ks | wasserstein (sd) | level |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in shown.itertuples(index=False):
            level = row.level if row.judged else f"{row.level} (not judged)"
            lines.append(
                f"| {row.variable} | {row.role} | {row.stage} | {row.psi:.3f} | "
                f"{row.ks:.3f} | {row.wasserstein_std:.3f} | {level} |"
            )
        return "\n".join(lines) + "\n"


def window_bounds(lodged_at: pd.Series, days: int, end: pd.Timestamp | None = None) -> Window:
    """The recent window ``[end - days, end)``; `end` defaults to just after the last lodging
    (`timeaxis.after_last`)."""
    if end is None:
        end = after_last(lodged_at)
    return Window("recent", end - pd.Timedelta(days=days), end)


@dataclass(frozen=True)
class Watched:
    """One monitored window: its bounds, its feature rows and the model's calibrated
    probability of each row."""

    window: Window
    X: pd.DataFrame
    score: ArrayLike


@dataclass(frozen=True)
class RecentOutcomes:
    """What is known of the recent window's outcomes: hits, the random stratum, and which
    labels are known by the window's end (None: all)."""

    hit: ArrayLike
    stratum: ArrayLike
    known: ArrayLike | None = None


def monitor_report(
    reference: Watched,
    recent: Watched,
    outcomes: RecentOutcomes,
    config: MonitorConfig,
    stages: dict[str, str] | None = None,
) -> MonitorReport:
    """Drift of features and score between two windows, and the random-stratum check (the
    recent probabilities against the recent hits of the random stratum)."""
    drift = drift_table(
        reference.X,
        recent.X,
        config,
        stages=stages,
        reference_score=reference.score,
        recent_score=recent.score,
    )
    stratum = random_stratum_check(
        outcomes.hit, outcomes.stratum, recent.score, config, outcomes.known
    )
    judged = drift.loc[drift["judged"], "level"] if not drift.empty else pd.Series([], dtype=str)
    level = worst([*judged.tolist(), stratum.level])
    return MonitorReport(
        drift=drift,
        stratum=stratum,
        level=level,
        reference=reference.window,
        recent=recent.window,
    )


def is_judged(feature: str, stage: str, config: MonitorConfig) -> bool:
    """Whether drift of this feature may raise a level (see `MonitorConfig.exclude_*`)."""
    if stage in set(config.exclude_stages):
        return False
    return not any(re.search(pattern, feature) for pattern in config.exclude_features)
