"""Regenerate the README's generated sections from the code and from bench/results/.

    .venv/bin/python tools/readme.py           # rewrite README.md in place
    .venv/bin/python tools/readme.py --check   # exit 1, naming the section, when it is stale

Sections sit between `<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME -->`:
- `schema`: the canonical columns, from `pipeline/ingest/columns.py`;
- `figures`: quality and speed, read from the JSON files the bench/ scripts write, each with the
  command that produced it. A figure whose file is missing is left out, never typed in.
Written by hand because it is a few string templates over our own JSON layouts; a templating
engine would add a dependency for no less code.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.evaluate.keys import Population  # noqa: E402
from pipeline.ingest.columns import DECLARATION_COLUMNS, OUTCOME_COLUMNS, Column  # noqa: E402

README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results"
PY = ".venv/bin/python"

# The command that writes each results file (what `make bench` and the closing notes ran).
COMMANDS = {
    "quality_default.json": f"{PY} bench/quality.py --config configs/default.yaml "
    "--set simulate.rows=60000 --set tune.n_trials=0",
    "quality_default_seeds.json": f"{PY} bench/quality.py --config configs/default.yaml "
    "--set simulate.rows=60000 --set tune.n_trials=0 --seeds 42 43 44",
    "honest.json": f"{PY} bench/honest.py --rows 200000 --seeds 48 49 50",
    "estimators.json": f"{PY} bench/estimators.py --rows 150000 --seeds 42 43 44 "
    "--set simulate.random_rate=0.05",
    "quality_kcs.json": f"{PY} bench/quality.py --config configs/kcs.yaml",
    "serve.json": f"{PY} bench/serve.py --rows 20000 --one 50 --thousand 10 --large 5 "
    "--cli-repeat 1",
    "kcs_features.json": f"{PY} bench/kcs_features.py",
    "kcs_categories.json": f"{PY} bench/kcs_categories.py",
    "load_default.json": f"{PY} bench/load.py --config configs/default.yaml "
    "--set simulate.rows=40000 --set tune.n_trials=4 --compare-yield",
    "load_kcs.json": f"{PY} bench/load.py --config configs/kcs.yaml --limit-ratio 2.5",
    "backtest_policies.json": f"{PY} bench/backtest.py --rows 200000 --weeks 52 --policies "
    "historical rules_only exploit random_5 random_10 uncertainty_10 --seeds 42 43 44 "
    "--out bench/results/backtest_policies.json",
    "validate.json": f"{PY} bench/validate.py",
    "simulate.json": f"{PY} bench/simulate.py --rows 1000000",
    "features.json": f"{PY} bench/features.py --rows 1000000 --repeats 2",
    "score.json": f"{PY} bench/score.py --rows 100000 --repeat 2 --treeshap-repeat 1 "
    "--full-rows 40000 --threads 2",
    "train.json": f"{PY} bench/train.py --rows 60000 --trials 5 --repeat 3 --threads 1 "
    "--learning-rates 0.1 --clock cpu",
    "tune_kcs.json": f"{PY} bench/tune.py --config configs/kcs.yaml --trials 8 --sides default "
    "--baseline-root <worktree of c3721b2^ drawing with tune.TrialSeededTPE, for the same trials>",
    "backtest.json": f"{PY} bench/backtest.py",
    "scale.json": f"{PY} bench/scale.py --rows 1000000 4000000` (in memory) and `{PY} "
    "bench/scale.py --rows 1000000 4000000 10000000 --chunk-months 1 --score-batch 1000000 "
    "--train-engine dask",
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    if not path.is_file():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    return [cells(header), "|" + "---|" * len(header), *(cells(row) for row in rows)]


def _pct(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value):.{digits}%}"


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _interval(row: dict[str, Any] | None) -> str:
    if row is None or row.get("value") is None:
        return "-"
    text = _num(row["value"])
    if row.get("low") is not None and row.get("high") is not None:
        text += f" [{_num(row['low'])}, {_num(row['high'])}]"
    return text


def _command(name: str) -> str:
    return f"`{COMMANDS[name]}`"


def schema_section() -> list[str]:
    """The canonical declarations and outcomes columns as two tables."""

    def rows(columns: tuple[Column, ...]) -> list[list[str]]:
        return [
            [
                f"`{c.name}`",
                "yes" if c.required else "no",
                c.kind + (", may be empty" if c.nullable else ""),
                c.description,
            ]
            for c in columns
        ]

    header = ["column", "required", "kind", "meaning"]
    return [
        "**declarations** (one row per declaration; `hs2`, `hs4`, `hs6` are derived):",
        "",
        *_table(header, rows(DECLARATION_COLUMNS)),
        "",
        "**outcomes** (one row per controlled declaration; none for the others):",
        "",
        *_table(header, rows(OUTCOME_COLUMNS)),
    ]


INSPECTED = Population.INSPECTED.label


def _metric(
    records: list[dict[str, Any]], population: str, model: str, metric: str, rate: float | None
) -> dict[str, Any] | None:
    for r in records:
        if r["population"] != population or r["model"] != model or r["metric"] != metric:
            continue
        if rate is None or (r["rate"] is not None and abs(float(r["rate"]) - rate) < 1e-9):
            return r
    return None


def quality_default(doc: dict[str, Any]) -> list[str]:
    """The simulator: model against every baseline at 5 %, on the ground truth."""
    population = Population.TRUTH.label  # bench results hold the metrics as rendered
    records = doc["metrics"]
    rows = []
    deployed = doc.get("deployed_ranking") or (
        "expected revenue"  # serve.rank_by auto (the config's) with a revenue part
        if _metric(records, population, "model by expected revenue", "precision", 0.05)
        else "probability"
    )
    ranked = [
        f"{learner} by {ranking}"
        for ranking in (
            deployed,
            *(r for r in ("probability", "expected revenue") if r != deployed),
        )
        for learner in ("model", *REFERENCES)
    ]
    unhealthy = {
        str(r["name"]): str(r["why"]) for r in doc.get("references") or [] if r["healthy"] == "no"
    }
    for model in (*ranked, "rules", "random"):
        if _metric(records, population, model, "precision", 0.05) is None:
            continue
        learner = model.split(" by ")[0]
        flag = f" (not a real fit: {unhealthy[learner]})" if learner in unhealthy else ""
        rows.append(
            [model + flag, "5 %"]
            + [_interval(_metric(records, population, model, m, 0.05)) for m in _METRICS]
        )
    for model in ("historical policy", "model at office capacity"):
        share = _metric(records, population, model, "precision", None)
        rate = "-" if share is None else _pct(share["rate"])
        rows.append(
            [model, rate]
            + [_interval(_metric(records, population, model, m, None)) for m in _METRICS]
        )
    auc = _metric(records, population, "model", "roc_auc", None)
    ap = _metric(records, population, "model", "average_precision", None)
    lines = [
        f"**Simulator** (`configs/default.yaml`, {doc['rows']:,} declarations, seed "
        f"{doc['seed']}; {doc['labelled_rows']:,} of them controlled). Test window "
        f"{_window(doc, 'test')}, every declaration scored against the simulator's ground truth "
        "(precision = share of controls that are frauds; recall = share of all frauds caught; "
        "revenue = share of all recoverable duty); 95 % bootstrap intervals. Every learner is "
        "trained on the same labels (the model's training window) and ranked both ways: by "
        f"probability and by expected revenue; the deployed ranking (`serve.rank_by`), by "
        f"{deployed}, comes first. "
        f"Model ROC-AUC {_num((auc or {}).get('value'))}, average precision "
        f"{_num((ap or {}).get('value'))}.",
        "",
        *_table(["selection", "controls", "precision", "recall", "revenue"], rows),
        *_edges(records, population, doc["seed"]),
    ]
    incoming = doc.get("incoming_truth") or {}
    red = incoming.get("red")
    if red:
        flagged = sum(incoming.get(c, {}).get("share of frauds", 0.0) for c in ("red", "yellow"))
        lines += [
            "",
            "On the 30 held-out incoming days (never seen by training, scored with a snapshot as "
            f"of their first day), the red channel held {_pct(red['share of frauds'])} of the "
            f"frauds and {_pct(red['share of revenue'])} of the recoverable duty with "
            f"{red['declarations']:,} declarations (fraud rate {_pct(red['fraud rate'])}); red and "
            f"yellow together {_pct(flagged)} of the frauds.",
        ]
    lines += _families_and_refit(doc)
    lines += ["", f"Command: {_command('quality_default.json')} ({doc['seconds']:.0f} s)."]
    return lines


_METRICS = ("precision", "recall", "revenue")


def _edge(metric: str, row: dict[str, Any] | None) -> str:
    """One paired difference in words: its interval and whether it excludes zero."""
    if row is None:
        return f"{metric} -"
    verdict = "not significant"
    if row["low"] is not None and row["low"] > 0:
        verdict = "an edge"
    elif row["high"] is not None and row["high"] < 0:
        verdict = "behind"
    return f"{metric} {_interval(row)} ({verdict})"


# The reference learners at their conventional parameters, then tuned with the model's budget
# (`evaluate.tune_references`, on in bench/quality.py); a table shows those its results hold.
REFERENCES = (
    "plain XGBoost",
    "LightGBM",
    "CatBoost",
    "plain XGBoost (tuned)",
    "LightGBM (tuned)",
    "CatBoost (tuned)",
)


def _best_reference(records: list[dict[str, Any]]) -> str | None:
    """The reference learner the report compared the model with (the strongest on the test)."""
    for r in records:
        name = str(r["model"])
        if name.startswith("model - ") and name.removeprefix("model - ") in REFERENCES:
            return name.removeprefix("model - ")
    return None


def _edges(records: list[dict[str, Any]], population: str, seed: Any) -> list[str]:
    """The model's paired-bootstrap edge over the best reference learner at 5 %, ranking by
    ranking, on one seed (the spread over seeds is `quality_seeds`)."""
    lines = []
    best = _best_reference(records)
    if best is None:
        return []
    for ranking in ("probability", "expected revenue"):
        name = f"model by {ranking} - {best} by {ranking}"
        cells = {m: _metric(records, population, name, m, 0.05) for m in _METRICS}
        if not any(cells.values()):
            continue

        lines.append(
            f"Seed {seed} alone, ranked by {ranking}, model minus {best} (the best reference "
            "learner) at 5 % (paired bootstrap over this test window): "
            + "; ".join(_edge(m, cells[m]) for m in _METRICS)
            + "."
        )
    return ["", *lines] if lines else []


def _t_interval(values: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and 95 % t-interval over seeds (no interval below two)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    half = float(stats.t.ppf(0.975, n - 1)) * sd / n**0.5
    return mean, mean - half, mean + half


def _signed(value: Any, low: Any, high: Any) -> str:
    """`+0.012 [-0.030, +0.054]`, or the mean alone without an interval."""
    if value is None:
        return "-"
    text = f"{float(value):+.3f}"
    if low is not None and high is not None:
        text += f" [{float(low):+.3f}, {float(high):+.3f}]"
    return text


def _verdict(row: dict[str, Any]) -> str:
    """What the interval over seeds says: an edge only when it lies above zero."""
    if row.get("low") is not None and row["low"] > 0:
        return "an edge"
    if row.get("high") is not None and row["high"] < 0:
        return "behind"
    return "not shown"


_SEED_METRICS = {
    "precision": "precision@5 %",
    "recall": "recall@5 %",
    "revenue": "revenue@5 %",
    "average_precision": "average precision",
}


def _seed_cell(
    diffs: list[dict[str, Any]], wanted: tuple[str, str, str]
) -> tuple[str, dict[str, Any] | None]:
    """The table's text of one (ranking, comparator, metric) difference over seeds, and its
    record (None: not measured)."""
    row = next((d for d in diffs if (d["ranking"], d["comparator"], d["metric"]) == wanted), None)
    if row is None:
        return "-", None
    text = _signed(row["mean"], row["low"], row["high"])
    if row["seeds_with_interval"]:
        text += f"; edge in {row['seeds_above_zero']} of {row['seeds_with_interval']}"
        if row["seeds_below_zero"]:
            text += f", behind in {row['seeds_below_zero']}"
    return text, row


def _seed_conclusions(
    rankings: list[str], verdicts: dict[tuple[str, str], dict[str, list[str]]]
) -> list[str]:
    """One sentence per ranking: whom the model has an edge over, and whom it is behind."""

    def said(ranking: str, verdict: str) -> str:
        found = verdicts.get((ranking, verdict), {})
        return "; ".join(f"{c} in {', '.join(labels)}" for c, labels in found.items())

    conclusions = []
    for ranking in rankings:
        edge, behind = said(ranking, "an edge"), said(ranking, "behind")
        conclusions.append(
            f"Ranked by {ranking}, the model has an edge over "
            + (edge or "no reference learner")
            + (f"; it is behind {behind}" if behind else "; it is behind none")
            + "."
        )
    return conclusions


def quality_seeds(doc: dict[str, Any]) -> list[str]:
    """The simulator's research claims over several seeds: the model minus each reference
    learner (both rankings) and the feature families, as means with t-intervals over seeds."""
    seeds = [str(s) for s in doc["seeds"]]
    n = len(seeds)
    t = next((float(d["t"]) for d in doc["differences"] if d.get("t")), None)
    diffs = doc["differences"]
    best = "best reference learner"

    def cell(ranking: str, comparator: str, metric: str) -> tuple[str, dict[str, Any] | None]:
        return _seed_cell(diffs, (ranking, comparator, metric))

    # The best reference learner is chosen per seed; when it is the same learner on every seed,
    # its row is that learner's, named as the best, rather than a duplicate row.
    bests = {s["best_reference"] for s in doc["per_seed"]}
    same_best = next(iter(bests)) if len(bests) == 1 and bests <= set(REFERENCES) else None
    comparators = list(REFERENCES) if same_best else [best, *REFERENCES]

    def named(comparator: str) -> str:
        return f"{comparator} (the best, every seed)" if comparator == same_best else comparator

    deployed = _deployed_ranking(doc)
    rankings = [deployed, *(r for r in ("probability", "expected revenue") if r != deployed)]
    rows = []
    verdicts: dict[tuple[str, str], dict[str, list[str]]] = {}
    for ranking in rankings:
        for comparator in comparators:
            cells = [cell(ranking, comparator, m) for m in _SEED_METRICS]
            if all(r is None for _, r in cells):
                continue
            rows.append([f"by {ranking}", named(comparator)] + [text for text, _ in cells])
            for (_, row), label in zip(cells, _SEED_METRICS.values(), strict=True):
                if row is not None:
                    verdicts.setdefault((ranking, _verdict(row)), {}).setdefault(
                        comparator, []
                    ).append(label)

    conclusions = _seed_conclusions(rankings, verdicts)
    best_words = ", ".join(
        f"{s['best_reference'] or 'none'} (seed {s['seed']})" for s in doc["per_seed"]
    )
    lines = [
        f"**Over {n} seeds** (the same run with `seed` {', '.join(seeds)}: each seed draws its own "
        f"simulated data, {doc['per_seed'][0]['rows']:,} declarations, and its own splits and "
        "learner randomness). The model minus each reference learner on all declarations "
        "(ground truth), both rankings: mean over the seeds [95 % t-interval over the seeds, "
        f"n = {n}"
        + (f", t = {t:.2f}: with {n} seeds the interval is wide" if t else "")
        + "]. 'Edge in k' counts the seeds whose own paired-bootstrap interval lies above 0; "
        "the report computes that interval only against the best reference learner (highest "
        f"test average precision; here {best_words}), so the other rows have the interval "
        f"over seeds alone. The rows lead with the ranking the export deploys, by {deployed} "
        "(`serve.rank_by`).",
        "",
        *_table(["ranking", "model minus", *_SEED_METRICS.values()], rows),
        "",
        "Read from the intervals over seeds (an edge only where the interval lies above 0): "
        + " ".join(conclusions)
        + " Every other difference in the table is not shown either way at this number of "
        "seeds. " + _multiplicity(sum(text != "-" for row in rows for text in row[2:])),
        *_trade_off(doc),
    ]
    lines += _families_over_seeds(doc)
    lines += [
        "",
        f"Command: {_command('quality_default_seeds.json')} ({doc['seconds']:.0f} s for the "
        f"{n} seeds).",
    ]
    return lines


def _deployed_ranking(doc: dict[str, Any]) -> str:
    """The ranking the export deploys, as the bench recorded it; for a record written before
    it did, what `serve.rank_by: auto` (the configs' setting) deploys: expected revenue when the
    model has a revenue part (its expected-revenue figures exist), else probability."""
    recorded = doc.get("deployed_ranking")
    if recorded:
        return str(recorded)
    levels = [s.get("levels", {}).get("model by expected revenue", {}) for s in doc["per_seed"]]
    return (
        "expected revenue"
        if any(lv.get("precision") is not None for lv in levels)
        else ("probability")
    )


def _multiplicity(comparisons: int) -> str:
    """The caveat every multi-seed table carries: its intervals are not adjusted."""
    return (
        f"These intervals are unadjusted for multiplicity: the table holds {comparisons} "
        "comparisons, each interval 95 % on its own, so about one in twenty would exclude 0 by "
        "chance alone; a single edge is a lead to test on more seeds, not a finding."
    )


def _families_over_seeds(doc: dict[str, Any]) -> list[str]:
    """Each feature family over the seeds: out of sample (the report's ablation on the test
    window) when the bench measured it so, else the selection's own in-sample figures, labelled
    as the diagnostic they are."""
    families = doc.get("families") or []
    if not families:
        return []
    measured = doc.get("families_measured") == "test window"
    rows = [
        [
            str(f["family"]),
            str(f["features"]),
            f"{f['kept']} of {f['seeds']}",
            _signed(f["mean"], f["low"], f["high"]) if measured else _signed(f["mean"], None, None),
        ]
        + ([f"{f['seeds_above_zero']} above, {f['seeds_below_zero']} below"] if measured else [])
        for f in families
    ]
    if not measured:
        return [
            "",
            "Feature families over the same seeds, in sample only (a diagnostic, not evidence): "
            "how often forward selection kept each, and what it adds to the mean validation "
            "average precision of the very fold blocks that chose it (so a family is kept "
            "exactly when it adds above 0 there): the mean over the seeds, without an "
            "interval. The out-of-sample effects (the report's family ablation on the test "
            "window) replace this table when the bench is rerun.",
            "",
            *_table(["family", "features", "kept in", "fold AP it adds (in sample)"], rows),
        ]
    adds = [f["family"] for f in families if _verdict(f) == "an edge"]
    hurts = [f["family"] for f in families if _verdict(f) == "behind"]
    return [
        "",
        "Feature families over the same seeds, out of sample: how often forward selection kept "
        "each, and what it adds to the test window's average precision when the frozen choice "
        "is refitted without it (or with it, if left out) with the model's parameters and "
        "trees: mean [95 % t-interval over the seeds], and how many seeds' own paired "
        "bootstrap interval lies above or below 0. " + _multiplicity(len(families)),
        "",
        *_table(["family", "features", "kept in", "test AP it adds", "seeds' own interval"], rows),
        "",
        "Families whose out-of-sample effect is above 0 over the seeds: "
        + (", ".join(adds) or "none")
        + "; below 0: "
        + (", ".join(hurts) or "none")
        + ".",
    ]


def _trade_off(doc: dict[str, Any]) -> list[str]:
    """The model's own trade-off over seeds: ranked by expected revenue minus by probability."""
    parts = []
    for metric in ("precision", "revenue"):
        gaps = [
            float(s["levels"]["model by expected revenue"][metric])
            - float(s["levels"]["model by probability"][metric])
            for s in doc["per_seed"]
            if s.get("levels", {}).get("model by expected revenue", {}).get(metric) is not None
            and s["levels"].get("model by probability", {}).get(metric) is not None
        ]
        if len(gaps) < 2:
            return []
        mean, low, high = _t_interval(gaps)
        verdict = {"an edge": "higher", "behind": "lower"}.get(
            _verdict({"low": low, "high": high}), "not shown"
        )
        higher = sum(g > 0 for g in gaps)
        parts.append(
            f"{metric}@5 % {_signed(mean, low, high)} ({verdict}; higher on {higher} of "
            f"{len(gaps)} seeds)"
        )
    return [
        "",
        "The model's own trade-off, ranked by expected revenue minus ranked by probability on "
        "the same seed (mean [95 % t-interval over the seeds]): " + "; ".join(parts) + ".",
    ]


def _window(doc: dict[str, Any], name: str) -> str:
    for text in doc.get("windows") or []:
        if str(text).startswith(name):
            return str(text).removeprefix(name).strip()
    return "(see the run)"


def quality_kcs(doc: dict[str, Any]) -> list[str]:
    """KCS: the model against the reference learners on 2021 Q1, average precision and
    precision at n %, with the paired edge over the best of them."""
    records = doc["metrics"]
    rates = [0.01, 0.05, 0.10]
    rows = [
        [model, _interval(_metric(records, INSPECTED, model, "average_precision", None))]
        + [_interval(_metric(records, INSPECTED, model, "precision", r)) for r in rates]
        for model in ("model", *REFERENCES, "random")
        if _metric(records, INSPECTED, model, "precision", 0.05) is not None
    ]
    best = _best_reference(records)
    lines = [
        f"**KCS** (`configs/kcs.yaml`): the evaluated model trained on January-July 2020 and "
        f"tested on 2021 Q1 ({_window(doc, 'test')}), next to the reference learners trained "
        "on the same window and labels; every KCS declaration was inspected, so precision is "
        "measured on the whole quarter. 95 % bootstrap intervals.",
        "",
        *_table(["selection", "average precision", *[f"precision@{r:.0%}" for r in rates]], rows),
    ]
    if best is not None:
        diff = f"model - {best}"
        cells = [_metric(records, INSPECTED, diff, "average_precision", None)] + [
            _metric(records, INSPECTED, diff, "precision", r) for r in rates
        ]
        lines += [
            "",
            f"Model minus {best}, the best reference learner (paired bootstrap): "
            + "; ".join(
                _edge(label, cell)
                for label, cell in zip(
                    ["average precision", *[f"precision@{r:.0%}" for r in rates]],
                    cells,
                    strict=True,
                )
            )
            + ".",
        ]
    lines += [
        "",
        "The paper's Table 3 (Jeong et al., 2022) reports precision@5 % / @10 % of .675 / .579 "
        "for XGBoost and .762 / .641 for LightGBM on the 2021 Q2 test quarter. That quarter is "
        "kept back from this repository for independent evaluation, so the figures above are "
        "on Q1 and are not the same test.",
        *_families_and_refit(doc),
        "",
        f"Command: {_command('quality_kcs.json')} ({doc['seconds']:.0f} s).",
    ]
    return lines


def _families_one_seed(doc: dict[str, Any]) -> list[str]:
    """One run's feature families: each one's out-of-sample effect on the test window (the
    report's family ablation) with its paired interval, and the selection's in-sample figures
    without intervals, as the diagnostic they are."""
    families = doc.get("families")
    if not families:
        return []
    lines: list[str] = []
    ablation = doc.get("family_ablation") or []
    population = next(
        (
            p
            for p in (Population.TRUTH.label, Population.INSPECTED.label)
            if any(r["population"] == p for r in ablation)
        ),
        None,
    )
    if population is not None:
        rows = [
            [
                str(r["family"]),
                str(r["features"]),
                "kept" if r["in the model"] == "yes" else "left out",
                _signed(r["test AP it adds"], r["low (95 %)"], r["high (95 %)"]),
            ]
            for r in ablation
            if r["population"] == population
        ]
        lines += [
            "",
            "Feature families, out of sample: what each adds to the test window's average "
            f"precision ({population}) when the frozen choice is refitted without it (or with "
            "it, if left out) with the model's parameters and trees (paired bootstrap 95 %):",
            "",
            *_table(["family", "features", "chosen", "test AP it adds"], rows),
        ]
    rows = [
        [
            str(e["family"]),
            str(e["features"]),
            "kept" if not e["dropped"] else "left out",
            f"{float(e['effect']):+.3f}",
        ]
        for e in families["effects"]
    ]
    return [
        *lines,
        "",
        "Feature families as forward selection chose them on the rolling tuning folds, in "
        "sample (a diagnostic, not evidence: the same fold blocks chose them, so a family is "
        "kept exactly when it adds above 0 there; no interval):",
        "",
        *_table(["family", "features", "chosen", "fold AP it adds (in sample)"], rows),
    ]


def _families_and_refit(doc: dict[str, Any]) -> list[str]:
    """The feature families (out of sample, and the selection's in-sample diagnostic), and what
    the deployed refit learned from."""
    lines = _families_one_seed(doc)
    refit = doc.get("refit")
    if refit:
        train = refit["windows"]["train"]
        calibration = refit["windows"]["calibration"]
        lines += [
            "",
            f"Deployed: the chosen configuration refit on {refit['rows']['train']['labelled']:,} "
            f"labels known by {refit['labels_known_by'][:10]} (train {train['start'][:10]} .. "
            f"{train['end'][:10]}, {refit['trees']:,} trees), calibrated on "
            f"{calibration['start'][:10]} .. {calibration['end'][:10]}; the figures above are "
            "the evaluated model's.",
        ]
    for warning in doc.get("warnings") or []:
        lines += ["", f"Warning: {warning}"]
    return lines


def _feedback_rows(by_seed: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    """One row per policy: means over the seeds, intervals, the gaps to model exploitation
    and the random stratum's check."""
    seeds = list(by_seed)

    def each(policy: str) -> list[dict[str, Any]]:
        return [next(p for p in by_seed[s] if p["policy"] == policy) for s in seeds]

    def mean(parts: list[dict[str, Any]], key: str) -> float:
        return sum(float(p[key]) for p in parts) / len(parts)

    def with_interval(parts: list[dict[str, Any]], key: str) -> str:
        value, low, high = _t_interval([float(p[key]) for p in parts])
        return _pct(value) + ("" if low is None else f" [{_pct(low)}, {_pct(high)}]")

    exploit = (
        each("exploit")
        if all(any(p["policy"] == "exploit" for p in by_seed[s]) for s in seeds)
        else None
    )

    def versus_exploit(policy: str, parts: list[dict[str, Any]], key: str) -> str:
        """The policy minus model exploitation on the same seed's data: mean [t-interval]."""
        if exploit is None or policy == "exploit":
            return "-"
        gaps = [float(p[key]) - float(e[key]) for p, e in zip(parts, exploit, strict=True)]
        value, low, high = _t_interval([100 * g for g in gaps])
        text = f"{value:+.1f}"
        return text if low is None else f"{text} [{low:+.1f}, {high:+.1f}]"

    def days(value: Any) -> str:
        return "-" if value is None else f"{float(value):.0f}"

    rows = []
    for policy in [p["policy"] for p in by_seed[seeds[0]]]:
        parts = each(policy)
        checked = [p for p in parts if p.get("random_controls")]
        inside = sum(bool(p.get("truth_in_interval")) for p in checked)
        random_check = (
            "-"
            if not checked
            else f"{inside} of {len(checked)} "
            f"(e.g. {_pct(checked[0]['random_hit_rate'])} [{_pct(checked[0]['random_low'])}, "
            f"{_pct(checked[0]['random_high'])}] vs {_pct(checked[0]['truth_hit_rate'])})"
        )
        rows.append(
            [
                str(policy),
                f"{mean(parts, 'controls'):,.0f}",
                with_interval(parts, "hit_rate"),
                with_interval(parts, "recall"),
                f"{_pct(mean(parts, 'recall_emerging'))} "
                f"({' / '.join(_pct(p['recall_emerging'], 0) for p in parts)})",
                " / ".join(days(p.get("emerging_days_to_detect")) for p in parts),
                versus_exploit(policy, parts, "recall"),
                versus_exploit(policy, parts, "recall_emerging"),
                random_check,
            ]
        )
    return rows


def feedback_loop(doc: dict[str, Any]) -> list[str]:
    """Policies replayed over a year on the simulator, for every seed the bench ran."""
    by_seed: dict[str, list[dict[str, Any]]] = doc.get("summary_by_seed") or {"42": doc["summary"]}
    seeds = list(by_seed)

    rows = _feedback_rows(by_seed)
    return [
        f"**Feedback loop** ({doc['rows']:,} simulated declarations, {doc['steps']} weekly steps "
        "after a 180-day warm-up, retraining every 4 steps on the labels each policy revealed; "
        f"the emerging scheme starts half-way; seeds {', '.join(seeds)}). Means over the seeds; "
        "hit rate and recall with their 95 % t-interval over the seeds in brackets (n = "
        f"{len(seeds)}, so wide), the emerging-scheme recall with each seed's value in brackets, "
        "days separated by slashes. Recall is against the ground truth. 'Minus exploit' is the "
        "policy's recall less that of model exploitation on the same seed's data, in percentage "
        "points: mean [95 % t-interval over the seeds]; exploration has a measured effect only "
        "where that interval excludes 0. The last column counts the seeds whose random-stratum "
        "95 % interval holds the true hit rate.",
        "",
        *_table(
            [
                "policy",
                "controls",
                "hit rate",
                "recall",
                "recall, emerging scheme",
                "days to first detect it",
                "recall minus exploit (points)",
                "emerging-scheme recall minus exploit (points)",
                "random stratum holds the truth",
            ],
            rows,
        ),
        "",
        _multiplicity(sum(cell != "-" for row in rows for cell in row[6:8])),
        "",
        f"Command: {_command('backtest_policies.json')} ({doc['total_s']:.0f} s for the first "
        "seed).",
    ]


def _speed_inputs(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The speed table's rows of validation and the simulator."""
    rows: list[list[str]] = []
    validate = results.get("validate.json")
    if validate:
        rows.append(
            [
                "validate (ingest contract)",
                f"{validate['rows']:,.0f} declarations",
                f"{validate['object_text_seconds']:.1f} s",
                f"{validate['object_text_rows_per_s']:,.0f} rows/s",
                _command("validate.json"),
            ]
        )
    simulate = results.get("simulate.json")
    if simulate:
        for run in simulate["runs"].values():
            rows.append(
                [
                    "simulate",
                    f"{run['rows']:,} declarations",
                    f"{run['seconds']:.1f} s, peak {run['peak_rss_gib']:.2f} GiB",
                    f"{run['rows_per_s']:,} rows/s",
                    _command("simulate.json"),
                ]
            )
    return rows


def _speed_features(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The speed table's rows of the feature build."""
    rows: list[list[str]] = []
    features = results.get("features.json")
    if features:
        for run in features["runs"]:
            stages = run.get("stages", {})
            per_stage = "; ".join(
                f"{name} {cost['ratio_to_floor']:.2f}x" for name, cost in stages.items()
            )
            rows.append(
                [
                    "features (as-of profiles, valuation, history)",
                    f"{run['rows']:,} declarations",
                    f"{run['build_s']:.1f} s CPU, peak {run['peak_memory_gb']:.2f} GB",
                    f"{run['declarations_per_s']:,.0f} declarations/s; "
                    + (
                        f"{run['ratio_to_floor']:.2f}x the stages' pandas floors "
                        f"(per stage: {per_stage})"
                        if stages
                        else f"{run['ratio_to_floor']:.1f}x the floor"
                    ),
                    _command("features.json"),
                ]
            )
    return rows


def _speed_score(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The speed table's rows of scoring."""
    rows: list[list[str]] = []
    score = results.get("score.json")
    if score:
        model = (
            f"pipeline model, {score['trees']} trees, ranked by {score['rank_by']}"
            if score.get("model") == "pipeline"
            else f"{score['trees']} trees"
        )
        for name, case in score["cases"].items():
            rows.append(
                [
                    f"score: {name}",
                    f"{score['rows']:,} declarations, {model}",
                    f"{case['seconds']:.2f} s",
                    f"{case['rows_per_second']:,.0f} rows/s ({case['ratio_to_bare']:.2f}x bare)",
                    _command("score.json"),
                ]
            )
        full = score.get("full_path") or {}
        if full:
            rows.append(
                [
                    "score: full path from raw declarations",
                    f"{full['rows']:,} declarations",
                    f"{full['seconds']:.2f} s",
                    f"{full['rows_per_second']:,.0f} rows/s",
                    _command("score.json"),
                ]
            )
    return rows


def _speed_train(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The speed table's rows of the train job and tuning."""
    rows: list[list[str]] = []
    train = results.get("train.json")
    if train:
        unit = "CPU s" if train.get("clock") == "cpu" else "s"
        for cost in train["overhead"]:
            bare = cost.get("bare_every_booster_s", cost["bare_xgboost_train_s"])
            rows.append(
                [
                    f"train job, fixed parameters (learning rate {cost['learning_rate']})",
                    f"{train['rows']:,} declarations, {cost['best_iteration'] + 1} trees"
                    + (
                        f" + {cost['revenue_trees']} revenue trees"
                        if cost.get("revenue_trees")
                        else ""
                    )
                    + (
                        f" + {cost['selection_trees']} selection-model trees"
                        if cost.get("selection_trees")
                        else ""
                    ),
                    f"{cost['job_s']:.1f} {unit} vs {bare:.1f} {unit} for xgboost.train of every "
                    "booster",
                    f"{cost['overhead_x']:.2f}x (target 1.3x: "
                    + ("met" if cost["overhead_x"] <= cost.get("target_x", 1.3) else "missed")
                    + "; matrices, selection-model sketch, calibration, metrics, MLflow logging)",
                    _command("train.json"),
                ]
            )
        studies = [
            ("tune (plain DMatrix per fold, as before)", train.get("study_plain_matrices")),
            ("tune (one QuantileDMatrix per window)", train.get("study_quantised")),
            ("tune (pruning)", train.get("study_pruning")),
            ("tune (no pruning)", train.get("study_no_pruning")),
        ]
        for name, study in studies:
            if not study:
                continue
            rows.append(
                [
                    name,
                    f"{study['trials']} trials",
                    f"{study['wall_s']:.0f} s",
                    f"{study['trials_per_minute']:.1f} trials/min"
                    + (
                        f" ({train['study_speedup_x']:.2f}x the plain matrices, same trials: "
                        f"{train['study_same_trials']})"
                        if "QuantileDMatrix" in name and "study_speedup_x" in train
                        else ""
                    ),
                    _command("train.json"),
                ]
            )
    return rows + _speed_tune(results)


def _speed_tune(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The speed table's rows of the KCS study: one process against the default workers."""
    tune = results.get("tune_kcs.json")
    if not tune:
        return []
    rows: list[list[str]] = []
    for side in tune["sides"]:
        load = " -> ".join(f"{value:.1f}" for value in side["load_1min"])
        rate = f"{side['trials_per_minute']:.2f} trials/min, best {side['best_value']:.4f}"
        if side["side"] == "default":
            rate += "".join(
                f"; {tune[f'speedup_over_{other}_x']:.2f}x {words} (same best: "
                f"{tune[f'same_best_value_as_{other}']})"
                for other, words in (("sequential", "one process"), ("baseline", "before"))
                if f"speedup_over_{other}_x" in tune
            )
        names = {"baseline": "before issue 27", "sequential": "one process", "default": "default"}
        rows.append(
            [
                f"tune KCS folds, {side['workers']} worker(s), {names[side['side']]}",
                f"{side['trials']} trials ({len(side['pruned'])} pruned)",
                f"{side['wall_s']:.0f} s (load {load})",
                rate,
                _command("tune_kcs.json"),
            ]
        )
    return rows


def _speed_backtest(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The speed table's rows of the backtest."""
    rows: list[list[str]] = []
    backtest = results.get("backtest.json")
    if backtest:
        breakdown = ", ".join(f"{k} {v:.0f} s" for k, v in backtest["breakdown_s"].items())
        rows.append(
            [
                f"backtest ({', '.join(backtest['policies'])})",
                f"{backtest['rows']:,} declarations, {backtest['steps']} weeks",
                f"{backtest['total_s']:.0f} s (target 600 s)",
                breakdown,
                _command("backtest.json"),
            ]
        )
    return rows


def _speed_load(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The speed table's rows of the whole run beside CPU-bound neighbours (bench/load.py), for
    each config measured."""
    rows: list[list[str]] = []
    for name in ("load_default.json", "load_kcs.json"):
        doc = results.get(name)
        if doc:
            rows += [_load_row(doc, run, name) for run in doc["under_load"]]
    return rows


def _load_row(doc: dict[str, Any], run: dict[str, Any], name: str) -> list[str]:
    """One run under load against the same config's run without neighbours."""
    idle = doc["idle"]
    ratio = (
        f"{run['ratio']:.2f}x the run without neighbours (target {doc['target_ratio']}x)"
        if run["seconds"] is not None
        else f"stopped unfinished after {run['limit_s']:.0f} s"
    )
    load = f"load {run['load_average_1min_start']:.1f} -> {run['load_average_1min_end']:.1f}"
    yielded = run.get("yield_to_load")
    threads = (
        ""
        if yielded is None
        else (", threads yielded to the load" if yielded else ", threads fixed")
    )
    config = Path(doc["config"]).stem
    return [
        f"`targeting run` ({config}), {run['neighbours']} busy neighbours, OpenMP "
        f"{run['omp_wait_policy']}{threads}",
        ", ".join(doc["overrides"]) or "-",
        f"{run['seconds']:.0f} s ({load})" if run["seconds"] is not None else "-",
        f"{ratio}; without neighbours {idle['seconds']:.0f} s (load "
        f"{idle['load_average_1min_start']:.1f} -> {idle['load_average_1min_end']:.1f})",
        _command(name),
    ]


def kcs_categories(doc: dict[str, Any]) -> list[str]:
    """Where LightGBM's edge on KCS comes from: the learners on the same raw columns, with and
    without category smoothing."""
    rows = [
        [
            str(r["window"]),
            str(r["learner"]),
            f"{r['average precision']:.3f}",
            f"[{r['low']:.3f}, {r['high']:.3f}]",
        ]
        for r in doc["average_precision"]
    ]
    return [
        "**Where LightGBM's edge on KCS comes from** (the same "
        f"{len(doc['columns'])} raw columns, train January-July 2020, early stopping on "
        "September 2020; 2020 Q4 is a window no choice of the pipeline was made on). LightGBM "
        "without its category smoothing (`cat_smooth`, `cat_l2`, `min_data_per_group` off) falls "
        "to the level of XGBoost given every category level: the edge is how it sorts a "
        "category's levels, smoothed, at each node. The model's own vocabulary (levels met fewer "
        "than `train.min_category_count` times reach the trees as missing) closes about half of "
        "that gap. Sorting the levels once by their training hit rate, shrunk by "
        "`train.category_prior` declarations (`train.category_order: hit_rate`, LightGBM's "
        "smoothed sort done once, globally), helps XGBoost given every level but adds nothing "
        "to the model's vocabulary; the KCS study measures it as trial 1 "
        "(`tune.tune_category_order`) and keeps XGBoost's partitions unless it wins on the folds "
        "by more than the noise. No XGBoost setting tried reaches LightGBM.",
        "",
        *_table(["window", "learner", "average precision", "95 % interval"], rows),
        "",
        f"Command: {_command('kcs_categories.json')}.",
    ]


def speed(results: dict[str, dict[str, Any]]) -> list[str]:
    """One row per stage benchmark that has a results file."""
    rows: list[list[str]] = []
    parts = (_speed_inputs, _speed_features, _speed_score, _speed_train, _speed_backtest)
    for part in (*parts, _speed_load):
        rows += part(results)
    if not rows:
        return []
    return [
        "**Speed** (2-core Linux machine, shared with other work while measured; best of the "
        "repeats each script makes; both sides of a ratio measured in the same run). What the "
        "ratios compare: features, the build's CPU time over that of the simplest pandas code "
        "computing each stage's statistics (per-stage ratios below 1 mean the build is faster "
        "than that floor); score, the throughput over a bare `inplace_predict` of the targeting "
        "booster on the prepared matrix; train job, its wall time over bare `xgboost.train` of "
        "every booster it trains (targeting and revenue models); tune, trials per minute on "
        "matrices quantised once per window over plain matrices per fold (same trials), and on "
        "the KCS folds, the default parallel workers over one process (same seed and trials; "
        "the load average when each side started and ended).",
        "",
        *_table(["stage", "size", "time", "rate", "command"], rows),
    ]


def _scale_cell(run: dict[str, Any] | None) -> str:
    if run is None:
        return "-"
    if "wall_s" not in run:
        return "failed"
    return f"{run['wall_s']:.1f} s, {run['peak_rss_gib']:.1f} GiB"


def scale(doc: dict[str, Any]) -> list[str]:
    """Time and peak memory of each stage per size and path, and the log-log exponents."""
    by_path: dict[str, dict[str, dict[str, Any]]] = doc.get("runs_by_path") or {
        stage: {
            "memory": {size: runs[stage] for size, runs in doc["runs"].items() if stage in runs}
        }
        for stage in ("simulate", "features", "train", "score")
    }
    slopes: dict[str, dict[str, Any]] = doc.get("scaling_by_path") or {
        stage: {"memory": slope} for stage, slope in doc.get("scaling", {}).items()
    }
    sizes = sorted(
        {int(size) for paths in by_path.values() for runs in paths.values() for size in runs}
    )
    rows = []
    for stage, paths in by_path.items():
        for path, runs in paths.items():
            cells = [_scale_cell(runs.get(str(size))) for size in sizes]
            slope = slopes.get(stage, {}).get(path)
            cells.append(
                "-"
                if not slope
                else f"{slope['wall_exponent']:.2f} / {slope['memory_exponent']:.2f}"
            )
            rows.append([stage, path, *cells])
    return [
        f"**Scaling** (each stage in a fresh process, {doc['threads']} XGBoost thread per process, "
        f"{doc['trees']} trees with fixed parameters; input and output time apart). The path says "
        "how a stage ran: in memory, features built over one-month chunks and written as built, "
        "the fit on Dask workers reading the file, scoring a batch at a time. The exponent is the "
        "slope of log(time) and log(peak memory) against log(declarations), per path. The Dask "
        "figures count the job's own process, not its workers, and include starting the "
        "cluster (a fixed 6-8 s that flattens their exponent).",
        "",
        *_table(
            [
                "stage",
                "path",
                *[f"{s:,} declarations" for s in sizes],
                "exponent: time / memory",
            ],
            rows,
        ),
        "",
        f"Command: {_command('scale.json')}.",
    ]


def _bounds(low: Any, high: Any) -> str:
    """`[low, high]` in per cent, or a dash where the export gave none."""
    if low is None or high is None or low != low or high != high:  # NaN: no bound
        return "-"
    return f"[{_pct(low)}, {_pct(high)}]"


def _honesty_rows(doc: dict[str, Any]) -> list[list[str]]:
    """One row per seed and channel, then each channel's ratio over the seeds (several)."""
    rows = []
    for record in doc["records"]:
        for c in record["channels"]:
            rows.append(
                [
                    str(record["seed"]),
                    c["channel"],
                    f"{c['declarations']:,}",
                    f"{_pct(c['expected_hit_rate'])} "
                    + _bounds(c.get("interval_low"), c.get("interval_high")),
                    _bounds(c.get("range_low"), c.get("range_high")),
                    _pct(c["true_hit_rate"]),
                    f"{c['expected_over_true']:.2f}",
                    "yes" if c.get("truth_in_range") else "no",
                ]
            )
    channels = list(dict.fromkeys(c["channel"] for r in doc["records"] for c in r["channels"]))
    for channel in channels if len(doc["records"]) > 1 else []:
        ratios = [
            float(c["expected_over_true"])
            for r in doc["records"]
            for c in r["channels"]
            if c["channel"] == channel
        ]
        mean, low, high = _t_interval(ratios)
        rows.append(
            [
                f"mean of {len(ratios)}",
                channel,
                "",
                "",
                "",
                "",
                f"{mean:.2f}" + ("" if low is None else f" [{low:.2f}, {high:.2f}]"),
                "",
            ]
        )
    return rows


def honesty(doc: dict[str, Any]) -> list[str]:
    """The export's expected hit rate per channel, its interval and range, against the incoming
    days' truth, per seed."""
    rows = _honesty_rows(doc)
    summary = doc["summary"]
    total = summary["cells"]
    return [
        "**What a probability means** (simulator, "
        f"{doc['records'][0]['rows']:,} declarations per seed, no tuning): the export's expected "
        "hit rate of each channel (on its reference window, after the test window) against what "
        "the 30 held-out incoming days really held (fraud rate x detection rate: the hit rate a "
        "control of every declaration of the channel would have had). Probabilities are "
        "calibrated with inverse-selection weights and anchored on the random stratum "
        "(`train.selection_correction`, `train.anchor_to_random`) over the last year "
        "(`train.anchor_days`), the only unbiased evidence of the level, since officers pick on "
        "what the features do not show. At the default 0.5 % draw that year holds about 500 "
        "random controls and 15-25 hits, so the level itself is uncertain by about +-45 % and no "
        "single figure can be promised within 15 %. The export therefore gives each channel the "
        "95 % interval of its expected hit rate (the posterior of the stratum's hit rate) and the "
        "95 % range of the hit rate a stretch like the reference window will show (that "
        "interval plus the luck of that many controls), and says what they rest on "
        "(`kpis.hit_rate_uncertainty`). "
        f"Within 15 %: {summary['within_15_percent']} of {total}; truth inside the interval: "
        f"{summary['truth_in_interval']} of {total}; inside the range: "
        f"{summary['truth_in_range']} of {total} (the range's median width is "
        f"{summary['median_range_width_over_expected']:.0%} of the expected rate). These seeds "
        "are held out: seeds 42-47 chose a year's anchor over two (range held 16 of 18 against "
        "13 of 18; the two-year level lags the fraud rate's rise after the emerging scheme "
        "starts). The last rows: each channel's ratio over the "
        "seeds, mean [95 % t-interval over the seeds].",
        "",
        *_table(
            [
                "seed",
                "channel",
                "incoming declarations",
                "expected [95 % interval]",
                "95 % range",
                "true",
                "expected / true",
                "true in range",
            ],
            rows,
        ),
        "",
        *walk_forward_lines(doc),
        f"Command: {_command('honest.json')}.",
    ]


def walk_forward_lines(doc: dict[str, Any]) -> list[str]:
    """What deploys, replayed at past cut-offs on each seed (`targeting evaluate
    --walk-forward`), and how the deployed model's incoming probabilities spread."""
    walks = [(r["seed"], r.get("walk_forward")) for r in doc["records"]]
    walks = [(seed, w) for seed, w in walks if w]
    if not walks:
        return []
    rows = []
    for seed, walk in walks:
        at = walk.get("precision_at_0.05", {})
        cells = [
            at.get(name, {})
            for name in (
                "deployed procedure",
                "evaluated model",
                "deployed procedure - evaluated model",
            )
        ]
        diff = cells[2]
        rows.append(
            [
                str(seed),
                str(len(walk["stretches"])),
                f"{cells[0].get('value', float('nan')):.3f}",
                f"{cells[1].get('value', float('nan')):.3f}",
                f"{diff.get('value', float('nan')):+.3f} "
                f"[{diff.get('low', float('nan')):+.3f}, {diff.get('high', float('nan')):+.3f}]",
                f"{walk['channels_inside_range']} of {walk['channel_cells']}",
            ]
        )
    summary = doc["summary"]
    ties = [r["incoming_probability"] for r in doc["records"] if r.get("incoming_probability")]
    return [
        "**What deploys, replayed** (the same seeds): at each of the last cut-offs (one every 30 "
        "days), the deployment procedure on what was known then (the refit, its calibration and "
        "anchor, its cut-offs and expected channel hit rates), the following 30 days scored "
        "through a snapshot built as of the cut-off; precision at 5 % against the truth (ranks "
        "within each stretch, paired bootstrap interval of the difference, unadjusted for "
        "multiplicity), and each channel's (and the random draw's) realised hit rate against "
        f"the export's 95 % range: {summary.get('walk_channels_inside_range')} of "
        f"{summary.get('walk_channel_cells')} cells inside.",
        "",
        *_table(
            [
                "seed",
                "cut-offs",
                "deployed precision@5%",
                "evaluated precision@5%",
                "deployed - evaluated",
                "channels inside the range",
            ],
            rows,
        ),
        "",
        "The deployed model's probabilities of the incoming declarations: "
        + "; ".join(
            f"seed {r['seed']}: {r['incoming_probability']['distinct_values']:,} distinct values "
            f"over {r['incoming_probability']['declarations']:,} declarations, "
            f"{r['incoming_probability']['exactly_0_or_1']:.1%} exactly 0 or 1, the most common "
            f"value held by {r['incoming_probability']['largest_share_of_one_value']:.2%}"
            for r in doc["records"]
            if r.get("incoming_probability")
        )
        + ("." if ties else ""),
        "",
    ]


def estimators(doc: dict[str, Any]) -> list[str]:
    """IPW and doubly-robust estimates against the ground truth: bias and interval coverage."""
    rows = [
        [
            r["estimator"].upper(),
            r["metric"],
            f"{r['rate']:.0%}",
            _num(r["truth"]),
            _num(r["estimate"]),
            f"{r['bias']:+.3f}",
            _num(r["rmse"]),
            f"{int(r['covered'])} of {int(r['seeds'])}",
            f"{r['stratum_rows']:.0f}",
        ]
        for r in doc["summary"]
    ]
    return [
        "**Estimating the model on all declarations from the random stratum** (simulator, "
        f"{doc['rows']:,} declarations, random draw at 5 % instead of 0.5 % so the stratum can "
        f"be judged; seeds {', '.join(str(s) for s in doc['seeds'])}): self-normalised IPW "
        "(Clopper-Pearson intervals) and doubly robust (the model's probability corrected by the "
        "stratum's weighted residuals) against the ground truth. Means over the seeds; "
        "'covered' counts the seeds whose 95 % interval holds the truth; the last column is the "
        "stratum rows inside the controlled top n % (the report says 'too few to judge' below "
        "`evaluate.min_stratum_rows`, 30). At the default 0.5 % draw, a 60-day test window "
        "holds a few stratum rows per cut-off: too few to judge.",
        "",
        *_table(
            [
                "estimator",
                "metric",
                "controls",
                "truth",
                "estimate",
                "bias",
                "RMSE",
                "covered",
                "stratum rows",
            ],
            rows,
        ),
        "",
        f"Command: {_command('estimators.json')} ({doc['seconds']:.0f} s).",
    ]


def figures_section() -> list[str]:
    """Quality first, then the feedback loop, then speed; only what has a results file."""
    names = [*COMMANDS]
    results = {name: doc for name in names if (doc := _load(name)) is not None}
    parts: list[list[str]] = []
    if "quality_default.json" in results:
        parts.append(quality_default(results["quality_default.json"]))
    if "quality_default_seeds.json" in results:
        parts.append(quality_seeds(results["quality_default_seeds.json"]))
    if "honest.json" in results:
        parts.append(honesty(results["honest.json"]))
    if "estimators.json" in results:
        parts.append(estimators(results["estimators.json"]))
    if "quality_kcs.json" in results:
        # bench/kcs_features.py (raw columns against every feature, fixed settings) predates
        # the family selection, which now makes that choice on validation: not shown.
        parts.append(quality_kcs(results["quality_kcs.json"]))
    if "kcs_categories.json" in results:
        parts.append(kcs_categories(results["kcs_categories.json"]))
    if "backtest_policies.json" in results:
        parts.append(feedback_loop(results["backtest_policies.json"]))
    parts.append(speed(results))
    if "serve.json" in results:
        parts.append(serving(results["serve.json"]))
    if "scale.json" in results:
        parts.append(scale(results["scale.json"]))
    lines: list[str] = []
    for part in (p for p in parts if p):
        lines += [*part, ""]
    return lines[:-1] if lines else ["No bench/results/ files yet: run `make bench`."]


def _serving_load(doc: dict[str, Any]) -> str:
    """The machine's load while serving was measured, and each target met or missed."""
    if "load_1min_at_start" not in doc:
        return "load not recorded"
    names = {"one_row_p50_ms": "1 row p50", "one_row_p99_ms": "1 row p99"}
    names["large_seconds"] = "20,000 rows"
    targets = ", ".join(
        f"{names.get(k, k)} <= {v:g}{' ms' if k.endswith('_ms') else ' s'}: "
        f"{'met' if doc['met'][k] else 'missed'}"
        for k, v in doc["targets"].items()
    )
    idle = "idle" if doc.get("idle") else "not idle"
    return f"1-minute load {doc['load_1min_at_start']:.2f} at the start ({idle}); targets {targets}"


def serving(doc: dict[str, Any]) -> list[str]:
    """REST latency and throughput against `mlflow models serve`, and the CLI scorer's rate."""
    rest = doc["rest"]
    rows = [
        [
            "1 row",
            f"{rest['one_row']['p50_ms']:.0f} ms",
            f"{rest['one_row']['p99_ms']:.0f} ms",
            f"{rest['one_row']['requests']}",
        ],
        [
            "1,000 rows",
            f"{rest['thousand_rows']['p50_ms']:.0f} ms",
            f"{rest['thousand_rows']['p99_ms']:.0f} ms",
            f"{rest['thousand_rows']['requests']}",
        ],
        [
            f"{rest['large']['rows']:,} rows",
            f"{rest['large']['p50_ms'] / 1000:.2f} s",
            f"{rest['large']['p99_ms'] / 1000:.2f} s",
            f"{rest['large']['requests']}",
        ],
    ]
    cli = doc["cli"]
    return [
        f"**Serving** (`mlflow models serve` of the registered scorer on 127.0.0.1, one worker, "
        f"{doc['machine']['cpus']} cores; the server started in {rest['start_s']:.1f} s; "
        f"{_serving_load(doc)}):",
        "",
        *_table(["request", "p50", "p99", "requests"], rows),
        "",
        f"`targeting score` from a new process, CSV in and out: {cli['rows']:,} rows in "
        f"{cli['seconds']:.1f} s ({cli['rows_per_s']:,} rows/s, model and snapshot downloads "
        f"included). Command: {_command('serve.json')}.",
    ]


SECTIONS: dict[str, Callable[[], list[str]]] = {
    "schema": schema_section,
    "figures": figures_section,
}


def render(text: str) -> str:
    """The README text with every generated section rewritten."""
    for name, build in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- BEGIN generated: {name} -->\n).*?(<!-- END generated: {name} -->)", re.S
        )
        match = pattern.search(text)
        if match is None:
            raise SystemExit(f"{README}: no generated section {name!r}")
        body = match.group(1) + "\n".join(build()) + "\n" + match.group(2)
        text = text[: match.start()] + body + text[match.end() :]
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when README.md is stale")
    args = parser.parse_args()
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(
                f"{README}: generated sections are out of date with the code or bench/results/; "
                "run `make readme`",
                file=sys.stderr,
            )
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
