"""`targeting explain`: SHAP explanations of a run, written under `config.paths.explanations`.

Global views on a seeded sample of the test window (mean |SHAP| bar, beeswarm, dependence plots,
SHAP mass by feature family, the red channel's mean SHAP against the green one's), local
waterfalls of the served probability (and of the revenue if hit, where the ranking uses expected
revenue) for the declarations asked for by id and for a sample of red-channel declarations.
Values as Parquet, tables as CSV, figures as PNG; all logged to the run under `explain/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.jobs import JobResult, headless_plots, step

if TYPE_CHECKING:
    from pipeline.evaluate.explain import Explanations
    from pipeline.features.featureset import FeatureSet
    from pipeline.serve.model import TargetingModel
    from pipeline.serve.ranking import Ranking

EXPLAIN_ARTIFACT = "explain"


def explain(
    config: Config, run_id: str | None = None, declarations: list[str] | None = None
) -> JobResult:
    """Explain a run's model (default: the last `train` run) globally and for chosen ids."""
    headless_plots()
    import pipeline.tracking as tracking
    from pipeline.evaluate import explain as ex
    from pipeline.evaluate.holdout import test_window
    from pipeline.jobs import catalog
    from pipeline.serve.model import plan_of
    from pipeline.serve.ranking import rank

    loaded = catalog.load_run(config, run_id, "evaluated")
    run_id, model = loaded.run_id, loaded.model
    features = catalog.feature_set(config)
    plan = plan_of(model, config, features.lodged_at)
    test = test_window(features, plan)
    step("SHAP values and global views")
    views = ex.GlobalViews.of(config.evaluate, config.seed)
    found = ex.window_explanations(model, test, plan.ranking, views, config.serve.channels)

    wanted = [str(d) for d in declarations or []]
    ids = features.declaration_id.astype(str)
    missing = sorted(set(wanted) - set(ids))
    if missing:
        raise ValueError(
            f"{config.paths.features}: column declaration_id has no row for {missing[:10]}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        )
    ranked = rank(model, test.X, plan.ranking)
    step("local explanations (waterfalls)")
    local_values, local_figures = local_explanations(model, features, test, ranked, wanted, config)
    folder: Path = config.paths.explanations
    write_explanations(folder, found, local_values, local_figures)
    tracking.log_artifacts(run_id, folder, EXPLAIN_ARTIFACT)

    top = found.importance.head(5)
    lines = [f"SHAP ({found.method}) on {len(found.values):,} declarations of the test window"]
    lines += [f"  {r.feature:<32} {r.stage:<10} {r.share:6.1%}" for r in top.itertuples()]
    lines += [
        "families: " + ", ".join(f"{r.stage} {r.share:.0%}" for r in found.families.itertuples())
    ]
    lines.append(f"{len(local_figures)} waterfalls; explanations: {folder}")
    return JobResult(
        stage="explain",
        outputs={"explanations": folder},
        figures={
            "method": found.method,
            "top_feature": str(top["feature"].iloc[0]) if len(top) else "",
            "families": {r.stage: float(np.round(r.share, 4)) for r in found.families.itertuples()},
        },
        lines=lines,
    )


def local_explanations(
    model: TargetingModel,
    features: FeatureSet,
    test: FeatureSet,
    ranked: Ranking,
    wanted: list[str],
    config: Config,
) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """Waterfalls of the declarations asked for by id and of a seeded red-channel sample of the
    test window (`ranked`: as the run plan ranks it); the values say why each declaration is
    there."""
    from pipeline.evaluate import explain as ex
    from pipeline.plan import RankingPolicy

    ev = config.evaluate
    ids = features.declaration_id.astype(str)
    red = ex.red_sample(
        ranked.priority, config.serve.channels.get("red", 0.02), ev.red_waterfalls, config.seed
    )
    chosen = pd.concat(
        [
            features.X.loc[ids.isin(wanted).to_numpy()],
            test.X.iloc[red],
        ]
    )
    chosen_ids = pd.concat(
        [features.declaration_id[ids.isin(wanted).to_numpy()], test.declaration_id.iloc[red]]
    )
    policy = RankingPolicy(ranked.rank_by)  # resolved by the plan's ranking, not the config
    local_values, local_figures = ex.waterfalls(model, chosen, chosen_ids, policy)
    local_values.insert(
        1, "why", ["requested"] * int(ids.isin(wanted).sum()) + ["red channel sample"] * len(red)
    )
    return local_values, local_figures


def write_explanations(
    folder: Path,
    found: Explanations,
    local_values: pd.DataFrame,
    local_figures: dict[str, bytes],
) -> None:
    """Values as Parquet, importance and families as CSV, every figure as PNG under `folder`."""
    figures_dir = folder / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    found.values.to_parquet(folder / "shap_values.parquet", index=False)
    local_values.to_parquet(folder / "local_values.parquet", index=False)
    found.importance.to_csv(folder / "importance.csv", index=False)
    found.families.to_csv(folder / "families.csv", index=False)
    found.cohorts.to_csv(folder / "red_vs_green.csv", index=False)
    for name, png in {**found.figures, **local_figures}.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        (figures_dir / f"{safe}.png").write_bytes(png)
