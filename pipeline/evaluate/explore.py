"""What the historical selection policy saw and missed: the tables behind the exploration notebook.

Pure functions of the canonical tables. `declaration_outcomes` lines up every declaration with its
control (if any) and, on the simulator, its ground truth; the other functions summarise that one
frame: a profile of the data, rates over time, a risk map (hit rate by two dimensions among
controlled declarations), the policy's recall by fraud scheme (ground truth only) and control
effort against hit rate by HS chapter (where the policy looks versus where it finds).
Figures are `matplotlib.figure.Figure` objects built without pyplot.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.ingest.columns import random_stratum

NO_FRAUD = "none"
MapValue = Literal["hit_rate", "controls", "hits"]


def _share(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def _rates(numerator: pd.Series, denominator: pd.Series | float) -> pd.Series:
    """numerator / denominator element-wise, NaN where the denominator is 0."""
    if isinstance(denominator, pd.Series):
        return numerator / denominator.where(denominator > 0)
    return numerator / denominator if denominator > 0 else numerator * np.nan


def declaration_outcomes(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    ground_truth: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per declaration: its attributes, whether it was controlled and what was found.

    Adds to the declaration columns: ``controlled`` (an inspected outcome exists), ``hit`` (a
    control found an irregularity), ``random`` (selected by the random draw), ``found_type``
    (fraud type recorded by the control) and ``revenue_recovered`` (NaN when the data records
    none, as on KCS). With `ground_truth`: ``fraud``, ``fraud_type`` and ``revenue_recoverable``.
    Several outcomes of one declaration count as one control (hit if any found something).
    """
    frame = declarations.reset_index(drop=True).copy()
    frame["declaration_id"] = frame["declaration_id"].astype(str)
    inspected = outcomes.loc[outcomes["inspected"].astype(bool)]
    revenue = (
        inspected["revenue_recovered"]
        if "revenue_recovered" in inspected.columns
        else pd.Series(np.nan, index=inspected.index)
    )
    reason = inspected["selection_reason"].astype("string")
    probability = (
        inspected["selection_probability"]
        if "selection_probability" in inspected.columns
        else pd.Series(np.nan, index=inspected.index)
    )
    per_declaration = pd.DataFrame(
        {
            "declaration_id": inspected["declaration_id"].astype(str).to_numpy(),
            "hit": inspected["hit"].astype(bool).to_numpy(),
            "random": random_stratum(reason, probability),
            "found_type": (
                inspected["fraud_type"].astype("string")
                if "fraud_type" in inspected.columns
                else pd.Series(pd.NA, index=inspected.index, dtype="string")
            ).to_numpy(),
            "revenue_recovered": revenue.to_numpy(dtype=float),
        }
    )
    grouped = per_declaration.groupby("declaration_id", sort=False)
    controls = grouped.agg(
        hit=("hit", "max"),
        random=("random", "max"),
        found_type=("found_type", "first"),
        revenue_recovered=("revenue_recovered", lambda s: s.sum(min_count=1)),
    )
    aligned = controls.reindex(frame["declaration_id"].to_numpy())
    frame["controlled"] = frame["declaration_id"].isin(controls.index).to_numpy()
    frame["hit"] = aligned["hit"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    frame["random"] = aligned["random"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    frame["found_type"] = aligned["found_type"].astype("string").to_numpy()
    frame["revenue_recovered"] = aligned["revenue_recovered"].to_numpy(dtype=float)
    if ground_truth is not None:
        truth = ground_truth.assign(declaration_id=ground_truth["declaration_id"].astype(str))
        truth = truth.drop_duplicates("declaration_id").set_index("declaration_id")
        truth = truth.reindex(frame["declaration_id"].to_numpy())
        frame["fraud"] = truth["fraud"].astype("boolean").to_numpy()
        frame["fraud_type"] = truth["fraud_type"].astype("string").to_numpy()
        frame["revenue_recoverable"] = truth["revenue_recoverable"].to_numpy(dtype=float)
    return frame


def has_truth(frame: pd.DataFrame) -> bool:
    """Whether `frame` (from `declaration_outcomes`) carries the simulator's ground truth."""
    return "fraud" in frame.columns and bool(frame["fraud"].notna().any())


def profile(frame: pd.DataFrame) -> pd.Series:
    """Headline figures of the data and of the historical policy (one value per line)."""
    lodged = pd.to_datetime(frame["lodged_at"])
    controls = int(frame["controlled"].sum())
    hits = int(frame["hit"].sum())
    random = int(frame["random"].sum())
    figures: dict[str, object] = {
        "declarations": len(frame),
        "first lodged": lodged.min(),
        "last lodged": lodged.max(),
        "days": float((lodged.max() - lodged.min()) / pd.Timedelta(days=1)) if len(frame) else 0.0,
        "offices": int(frame["office"].nunique()),
        "importers": int(frame["importer"].nunique()),
        "declarants": int(frame["declarant"].nunique()),
        "HS chapters": int(frame["hs2"].nunique()),
        "origin countries": int(frame["origin_country"].nunique()),
        "AEO share": float(frame["aeo"].astype(bool).mean()) if len(frame) else float("nan"),
        "controls": controls,
        "control rate": _share(controls, len(frame)),
        "hits": hits,
        "hit rate of the controls": _share(hits, controls),
        "random-stratum controls": random,
        "random-stratum hit rate": _share(int((frame["hit"] & frame["random"]).sum()), random),
        "revenue recovered": float(frame["revenue_recovered"].sum(min_count=1)),
    }
    if has_truth(frame):
        fraud = frame["fraud"].fillna(False).to_numpy(dtype=bool)
        figures.update(
            {
                "fraud rate (ground truth)": float(fraud.mean()),
                "recall of the historical policy": _share(
                    int((frame["hit"].to_numpy() & fraud).sum()), int(fraud.sum())
                ),
                "revenue recoverable (ground truth)": float(frame["revenue_recoverable"].sum()),
            }
        )
    return pd.Series(figures, name="value", dtype=object)


def rates_over_time(frame: pd.DataFrame, freq: str = "W") -> pd.DataFrame:
    """Declarations, control rate and hit rate per period (and fraud rate, recall with truth).

    `freq`: a pandas period alias; periods are labelled by their first day ("W": weeks from
    Monday to Sunday, "M": calendar months).
    """
    period = pd.to_datetime(frame["lodged_at"]).dt.to_period(freq).dt.start_time
    columns = {
        "controlled": frame["controlled"].to_numpy(dtype=float),
        "hit": frame["hit"].to_numpy(dtype=float),
        "random": frame["random"].to_numpy(dtype=float),
        "random_hit": (frame["hit"] & frame["random"]).to_numpy(dtype=float),
    }
    truth = has_truth(frame)
    if truth:
        fraud = frame["fraud"].fillna(False).to_numpy(dtype=bool)
        columns["fraud"] = fraud.astype(float)
        columns["fraud_found"] = (fraud & frame["hit"].to_numpy(dtype=bool)).astype(float)
    table = pd.DataFrame(columns).groupby(period.to_numpy()).agg(["sum", "size"])
    out = pd.DataFrame(index=table.index.rename("period"))
    out["declarations"] = table[("controlled", "size")].astype("int64")
    out["controls"] = table[("controlled", "sum")].astype("int64")
    out["control_rate"] = _rates(out["controls"], out["declarations"])
    out["hits"] = table[("hit", "sum")].astype("int64")
    out["hit_rate"] = _rates(out["hits"], out["controls"])
    out["random_controls"] = table[("random", "sum")].astype("int64")
    out["random_hit_rate"] = _rates(table[("random_hit", "sum")], out["random_controls"])
    if truth:
        out["frauds"] = table[("fraud", "sum")].astype("int64")
        out["fraud_rate"] = _rates(out["frauds"], out["declarations"])
        out["recall"] = _rates(table[("fraud_found", "sum")], out["frauds"])
    return out


def risk_map(
    frame: pd.DataFrame,
    rows: str = "origin_country",
    columns: str = "hs2",
    *,
    value: MapValue = "hit_rate",
    min_controls: int = 5,
    top: int = 15,
) -> pd.DataFrame:
    """Hit rate among controlled declarations by two dimensions (a rows x columns table).

    Only the `top` most controlled levels of each dimension are kept; with ``value="hit_rate"``
    a cell with fewer than `min_controls` controls is NaN (too few to say). ``value="controls"``
    or ``"hits"`` gives the counts behind the rates.
    """
    controlled = frame.loc[frame["controlled"].to_numpy(dtype=bool)]
    row_key = controlled[rows].astype("string").fillna("<missing>")
    column_key = controlled[columns].astype("string").fillna("<missing>")
    keep_rows = row_key.value_counts().head(top).index
    keep_columns = column_key.value_counts().head(top).index
    inside = row_key.isin(keep_rows).to_numpy() & column_key.isin(keep_columns).to_numpy()
    cells = (
        pd.DataFrame(
            {
                rows: row_key.to_numpy()[inside],
                columns: column_key.to_numpy()[inside],
                "hit": controlled["hit"].to_numpy(dtype=float)[inside],
            }
        )
        .groupby([rows, columns])["hit"]
        .agg(controls="size", hits="sum")
    )
    cells["hit_rate"] = _rates(cells["hits"], cells["controls"])
    if value == "hit_rate":
        cells.loc[cells["controls"] < min_controls, "hit_rate"] = np.nan
    table = cells[value].unstack(columns)
    table = table.reindex(index=sorted(keep_rows), columns=sorted(keep_columns))
    if value != "hit_rate":
        table = table.fillna(0).astype("int64")
    return table


def recall_by_scheme(frame: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """The historical policy against the ground truth, by fraud scheme (and period with `freq`).

    Columns: frauds, controlled (frauds that were controlled), found (controls that found them),
    recall (found / frauds), revenue_recoverable, revenue_recovered, first_lodged. Schemes that
    the rules and officers do not look for show a low recall; a scheme that appears late (the
    simulator's emerging scheme) shows it from its first period.
    """
    if not has_truth(frame):
        raise ValueError(
            "recall by fraud scheme needs the ground truth (the simulator's ground_truth table): "
            "on real data only controlled declarations have a label; see `by_chapter`"
        )
    frauds = frame.loc[frame["fraud"].fillna(False).to_numpy(dtype=bool)]
    keys: list[pd.Series] = [frauds["fraud_type"].astype("string").rename("fraud_type")]
    if freq is not None:
        period = pd.to_datetime(frauds["lodged_at"]).dt.to_period(freq).dt.start_time
        keys.insert(0, period.rename("period"))
    table = (
        pd.DataFrame(
            {
                "controlled": frauds["controlled"].to_numpy(dtype=float),
                "found": frauds["hit"].to_numpy(dtype=float),
                "revenue_recoverable": frauds["revenue_recoverable"].to_numpy(dtype=float),
                "revenue_recovered": frauds["revenue_recovered"].to_numpy(dtype=float),
                "lodged_at": pd.to_datetime(frauds["lodged_at"]).to_numpy(),
            },
            index=frauds.index,
        )
        .groupby([k.to_numpy() for k in keys])
        .agg(
            frauds=("found", "size"),
            controlled=("controlled", "sum"),
            found=("found", "sum"),
            revenue_recoverable=("revenue_recoverable", "sum"),
            revenue_recovered=("revenue_recovered", "sum"),
            first_lodged=("lodged_at", "min"),
        )
    )
    table.index = table.index.set_names([k.name for k in keys])
    for column in ("frauds", "controlled", "found"):
        table[column] = table[column].astype("int64")
    table.insert(3, "recall", _rates(table["found"], table["frauds"]))
    if freq is None:
        table = table.sort_values("frauds", ascending=False)
    return table


def by_chapter(frame: pd.DataFrame, chapter: str = "hs2") -> pd.DataFrame:
    """Where the policy looks versus where it finds, by HS chapter.

    Columns: declarations, controls, control_rate (of the chapter's declarations), control_share
    (of all controls), hits, hit_rate (of the chapter's controls), hit_share (of all hits), and
    with ground truth frauds, fraud_rate and recall. A chapter whose hit_share exceeds its
    control_share yields more than the effort spent on it: a candidate blind spot. Largest
    chapters first.
    """
    data = {
        "controlled": frame["controlled"].to_numpy(dtype=float),
        "hit": frame["hit"].to_numpy(dtype=float),
    }
    truth = has_truth(frame)
    if truth:
        fraud = frame["fraud"].fillna(False).to_numpy(dtype=bool)
        data["fraud"] = fraud.astype(float)
        data["fraud_found"] = (fraud & frame["hit"].to_numpy(dtype=bool)).astype(float)
    key = frame[chapter].astype("string").fillna("<missing>").to_numpy()
    table = pd.DataFrame(data).groupby(key).agg(["sum", "size"])
    out = pd.DataFrame(index=table.index.rename(chapter))
    out["declarations"] = table[("controlled", "size")].astype("int64")
    out["controls"] = table[("controlled", "sum")].astype("int64")
    out["control_rate"] = _rates(out["controls"], out["declarations"])
    out["control_share"] = _rates(out["controls"], float(out["controls"].sum()))
    out["hits"] = table[("hit", "sum")].astype("int64")
    out["hit_rate"] = _rates(out["hits"], out["controls"])
    out["hit_share"] = _rates(out["hits"], float(out["hits"].sum()))
    if truth:
        out["frauds"] = table[("fraud", "sum")].astype("int64")
        out["fraud_rate"] = _rates(out["frauds"], out["declarations"])
        out["recall"] = _rates(table[("fraud_found", "sum")], out["frauds"])
    return out.sort_values("declarations", ascending=False, kind="stable")


def heatmap_figure(table: pd.DataFrame, title: str, *, percent: bool = True) -> Figure:
    """A rows x columns table as a heat map, each cell annotated (blank where NaN)."""
    values = table.to_numpy(dtype=float)
    fig = Figure(figsize=(1.0 + 0.5 * max(table.shape[1], 4), 1.0 + 0.38 * max(table.shape[0], 4)))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="Reds", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=90)
    ax.set_yticks(range(table.shape[0]), [str(r) for r in table.index])
    ax.set_xlabel(str(table.columns.name or ""))
    ax.set_ylabel(str(table.index.name or ""))
    finite = values[np.isfinite(values)]
    middle = float(finite.max()) / 2 if len(finite) else 0.0
    rows, columns = np.nonzero(np.isfinite(values))
    for r, c in zip(rows, columns, strict=True):  # one label per non-empty cell of a small map
        v = values[r, c]
        ax.text(
            c,
            r,
            f"{v:.0%}" if percent else f"{v:,.0f}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if v > middle else "black",
        )
    fig.colorbar(image, ax=ax, fraction=0.03)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def blind_spot_figure(chapters: pd.DataFrame, label_top: int = 12) -> Figure:
    """Control share against hit rate by chapter (bubble size: declarations): where controls go
    and where they pay off. The `label_top` largest chapters are named."""
    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    size = 800 * chapters["declarations"] / max(float(chapters["declarations"].max()), 1.0)
    ax.scatter(
        chapters["control_share"] * 100,
        chapters["hit_rate"] * 100,
        s=size.clip(lower=8),
        alpha=0.5,
        color="#3b6ea8",
    )
    overall = _share(float(chapters["hits"].sum()), float(chapters["controls"].sum()))
    ax.axhline(overall * 100, color="grey", linestyle="--", linewidth=1)
    for name, row in chapters.head(label_top).iterrows():  # a dozen labels
        ax.annotate(str(name), (row["control_share"] * 100, row["hit_rate"] * 100), fontsize=8)
    ax.set_xlabel("share of all controls (%)")
    ax.set_ylabel("hit rate of the chapter's controls (%)")
    ax.set_title("Where controls go vs where they find (dashed: overall hit rate)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
