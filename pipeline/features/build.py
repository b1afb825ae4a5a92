"""Composes the feature stages into a FeatureSet (training) or attaches a Snapshot (serving).

`build_feature_set` gives every declaration its features as of its own lodging time and the
label of its outcome; `build_snapshot` freezes what is known at a cut-off; `attach` gives new
declarations their features from a snapshot. Training and serving call the same as-of join
(`profiles.as_of_sum`): training over every event, serving over the snapshot's latest rows, so a
declaration lodged just after the cut-off gets the same features either way.

The chunked build (`features/chunked.py`) composes the same steps chunk by chunk, through this
module's public building blocks: `sorted_declarations`, `aligned_outcomes` and `label_columns`
(declarations in feature order, their outcomes, the labels), `raw_levels` (the raw columns'
vocabulary), `stream_totals` / `table_totals` / `combine_totals` / `profile_tables` (profile
totals as of each declaration, from the event stream or from profile tables, and the tables),
and `run_stages` (the configured stages over those totals, shared by training and serving).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import FeaturesConfig
from pipeline.features import decay, history, profiles, valuation
from pipeline.features.featureset import FeatureSet
from pipeline.features.lookup import EntityLookup, KeyIndex, RequestKeys, Vocabulary

RAW_NAMES = {"office": "office_code"}  # `office` is a FeatureSet metadata column
RAW_FLOATS = ("quantity", "net_mass_kg", "declared_value", "duty_rate", "declared_duty")
REQUIRED_DECLARATION_COLUMNS = (
    "declaration_id",
    "lodged_at",
    "office",
    "importer",
    "declarant",
    "seller",
    "hs_code",
    "origin_country",
    "departure_country",
    "transport_mode",
    "net_mass_kg",
    "declared_value",
    "duty_rate",
    "aeo",
)
REQUIRED_OUTCOME_COLUMNS = ("declaration_id", "inspected", "hit")
HS_DIGITS = {"hs2": 2, "hs4": 4, "hs6": 6}
# Feature settings that change how the features are computed, not what they are.
HOW_BUILT = ("chunk_months",)


@dataclass
class Snapshot:
    """What is known at ``as_of``: profile tables, reference prices and importer history.

    Every table holds the state built from declarations lodged and outcomes known strictly
    before ``as_of``; `attach` joins it to new declarations.
    """

    as_of: pd.Timestamp
    config: dict[str, Any]
    profiles: dict[str, pd.DataFrame]
    valuation: valuation.ValuationState
    history: history.HistoryState
    categories: dict[str, list[Any]]
    _lookups: SnapshotLookups | None = field(default=None, init=False, repr=False, compare=False)

    def lookups(self, config: FeaturesConfig) -> SnapshotLookups:
        """The snapshot's per-entity lookups (`snapshot_lookups`), built on first use and kept:
        a serving process builds them once, not per request. The tables are not to be changed
        once the lookups are built."""
        if self._lookups is None or self._lookups.settings != config.model_dump(mode="json"):
            self._lookups = snapshot_lookups(self, config)
        return self._lookups

    def save(self, folder: Path) -> None:
        """Write the tables as Parquet and ``snapshot.json`` (as_of, config, categories)."""
        folder.mkdir(parents=True, exist_ok=True)
        tables = self._tables()
        for name, table in tables.items():
            table.to_parquet(folder / f"{name}.parquet", index=False)
        document = {
            "as_of": self.as_of.isoformat(),
            "config": self.config,
            "categories": {k: [_plain(v) for v in vs] for k, vs in self.categories.items()},
            "profiles": sorted(self.profiles),
            "references": sorted(self.valuation.references),
            "tables": sorted(tables),
        }
        (folder / "snapshot.json").write_text(json.dumps(document, indent=2), encoding="utf-8")

    def _tables(self) -> dict[str, pd.DataFrame]:
        tables = {f"profile__{k}": _storable(v) for k, v in self.profiles.items()}
        tables.update(
            {f"reference__{k}": _storable(v) for k, v in self.valuation.references.items()}
        )
        tables["lowest_rate"] = _storable(self.valuation.lowest_rate)
        tables["importers"] = _storable(self.history.importers)
        tables["pairs"] = _storable(self.history.pairs)
        tables["recent"] = _storable(self.history.recent)
        return tables

    @classmethod
    def load(cls, folder: Path) -> Snapshot:
        """Read what `save` wrote."""
        path = folder / "snapshot.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a feature snapshot folder")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"snapshot file {path} is damaged (not valid JSON: {exc})") from None

        def read(name: str) -> pd.DataFrame:
            table = folder / f"{name}.parquet"
            try:
                return pd.read_parquet(table)
            except Exception as exc:  # pyarrow raises several unrelated types
                raise ValueError(f"snapshot file {table} is damaged or missing: {exc}") from None

        return cls(
            as_of=pd.Timestamp(document["as_of"]),
            config=document["config"],
            profiles={k: read(f"profile__{k}") for k in document["profiles"]},
            valuation=valuation.ValuationState(
                references={k: read(f"reference__{k}") for k in document["references"]},
                lowest_rate=read("lowest_rate"),
            ),
            history=history.HistoryState(
                importers=read("importers"), pairs=read("pairs"), recent=read("recent")
            ),
            categories=document["categories"],
        )


def _plain(value: Any) -> Any:
    """A JSON-friendly category level."""
    return value.item() if isinstance(value, np.generic) else value


def _storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Object key columns as strings (missing kept) so that Parquet stores them."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(lambda v: v if v is None or v != v else str(v))
    return out


# --------------------------------------------------------------------------------------------
# Inputs


def _check_columns(frame: pd.DataFrame, required: tuple[str, ...], table: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: required column(s) missing: {', '.join(missing)}")


def _with_hs_levels(declarations: pd.DataFrame) -> pd.DataFrame:
    """hs2/hs4/hs6 as categories, cut from hs_code when the frame lacks them."""
    missing = [level for level in HS_DIGITS if level not in declarations.columns]
    if not missing:
        return declarations
    code = declarations["hs_code"].astype("string")
    return declarations.assign(
        **{lvl: code.str[: HS_DIGITS[lvl]].astype("category") for lvl in missing}
    )


def sorted_declarations(declarations: pd.DataFrame) -> pd.DataFrame:
    """Declarations ordered by (lodged_at, declaration_id), RangeIndex; the input is untouched.

    Only rows sharing an instant with another row are ordered by id (a string sort of millions
    of ids would cost more than every feature).
    """
    _check_columns(declarations, REQUIRED_DECLARATION_COLUMNS, "declarations")
    lodged = declarations["lodged_at"]
    if lodged.isna().any():
        rows = np.flatnonzero(lodged.isna().to_numpy())[:10].tolist()
        raise ValueError(f"declarations: column lodged_at is missing at rows {rows}")
    ids = declarations["declaration_id"]
    times = lodged.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    tied = np.zeros(len(order), dtype=bool)
    same = sorted_times[1:] == sorted_times[:-1]
    tied[1:] |= same
    tied[:-1] |= same
    if tied.any():
        block = order[tied]
        texts = ids.to_numpy()[block].astype(str)
        if not _ids_ascending(sorted_times[tied], texts):  # validation has ordered them
            key = pd.DataFrame({"t": sorted_times[tied], "id": texts}).sort_values(
                ["t", "id"], kind="stable"
            )
            order[tied] = block[key.index.to_numpy()]
    columns = list(declarations.columns)
    if all(level in columns for level in HS_DIGITS):
        columns.remove("hs_code")  # the HS levels carry it; no copy of millions of strings
    positions = [declarations.columns.get_loc(c) for c in columns]
    if np.array_equal(order, np.arange(len(order))):  # already in order (a stream usually is):
        out = declarations.iloc[:, positions].reset_index(drop=True)  # copies, gathers nothing
    else:
        out = declarations.iloc[order, positions].reset_index(drop=True)
    if not pd.api.types.is_string_dtype(out["declaration_id"]):
        out["declaration_id"] = out["declaration_id"].astype(str)
    return _with_hs_levels(out)


def _ids_ascending(times: np.ndarray, ids: np.ndarray) -> bool:
    """Whether the ids of each run of equal times are in ascending order already (then the
    stable sort by time and id keeps every row where it is): a served batch of 20,000 rows
    lodged within 1,646 seconds spent 15 ms sorting ids that validation had sorted."""
    texts = np.asarray(ids, dtype=object)  # compared as Python strings, as the sort does
    same = times[1:] == times[:-1]
    return bool(np.all(~same | (texts[:-1] <= texts[1:])))


def _rows_of(declarations: pd.DataFrame, ids: pd.Series) -> np.ndarray:
    """Row of each id in ``declarations`` (-1 when absent).

    The hash table is built on the (few) distinct outcome ids and probed with the declaration
    ids, not the reverse: hashing millions of declaration ids into a table cost more than every
    profile. Ids are unique after validation; a repeated id that outcomes refer to is an error.
    """
    wanted = pd.Index(ids.astype(str)).unique()
    position = wanted.get_indexer(declarations["declaration_id"])
    matched = np.flatnonzero(position >= 0)
    counts = np.bincount(position[matched], minlength=len(wanted))
    if (counts > 1).any():
        repeated = wanted[counts > 1][:10].tolist()
        raise ValueError(f"declarations: column declaration_id repeats values {repeated}")
    row_of_wanted = np.full(len(wanted), -1, dtype=np.int64)
    row_of_wanted[position[matched]] = matched
    return row_of_wanted[wanted.get_indexer(ids.astype(str))]


def known_at(outcomes: pd.DataFrame, lodged_at: pd.Series, config: FeaturesConfig) -> pd.Series:
    """When each outcome counts: result_at + reporting delay, else lodged_at + missing delay."""
    delay = pd.Timedelta(days=config.reporting_delay_days)
    fallback = lodged_at + pd.Timedelta(days=config.missing_result_delay_days)
    if "result_at" not in outcomes.columns:
        return pd.Series(fallback.to_numpy(), index=outcomes.index)
    result = pd.to_datetime(outcomes["result_at"])
    return (result + delay).fillna(pd.Series(fallback.to_numpy(), index=outcomes.index))


def aligned_outcomes(
    outcomes: pd.DataFrame, declarations: pd.DataFrame, config: FeaturesConfig
) -> tuple[pd.DataFrame, np.ndarray]:
    """Outcomes of known declarations (one per declaration), their rows, and ``known_at``."""
    _check_columns(outcomes, REQUIRED_OUTCOME_COLUMNS, "outcomes")
    row = _rows_of(declarations, outcomes["declaration_id"])
    keep = row >= 0
    out = outcomes.loc[keep].reset_index(drop=True)
    row = row[keep]
    lodged = declarations["lodged_at"].iloc[row].reset_index(drop=True)
    out = out.assign(known_at=known_at(out, lodged, config).to_numpy())
    for column, default in (
        ("selection_probability", np.nan),
        ("revenue_recovered", np.nan),
        ("selection_reason", "unknown"),
    ):
        if column not in out.columns:
            out[column] = default
    # One outcome per declaration: the one known last (a later review supersedes).
    order = np.lexsort((out["known_at"].to_numpy(), row))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = row[order][1:] != row[order][:-1]
    chosen = np.sort(order[last])
    return out.iloc[chosen].reset_index(drop=True), row[chosen]


# --------------------------------------------------------------------------------------------
# Stages


def _ordered_keys(config: FeaturesConfig) -> list[tuple[str, ...]]:
    """Profile keys with every HS parent before its child (parents' rates feed children's):
    the order of the profile features in X, whatever the shrinkage."""
    keys = profiles.profile_keys(config)
    rank: dict[tuple[str, ...], int] = {("hs2",): 0, ("hs4",): 1, ("hs6",): 2}
    return sorted(keys, key=lambda k: rank.get(k, 3))


def _computing_order(config: FeaturesConfig) -> list[tuple[str, ...]]:
    """The order the keys' rates are computed in: `_ordered_keys`, or with hierarchical
    shrinkage every ancestor (`profiles.coarser`) before the keys below it."""
    keys = _ordered_keys(config)
    if config.shrinkage == "hierarchical":
        keys = sorted(keys, key=profiles.hierarchy_rank)
    return keys


GLOBAL = "__global__"


def _parent(key: tuple[str, ...], done: Mapping[str, np.ndarray], config: FeaturesConfig) -> str:
    """Name of the computed level whose rate a key's rate is shrunk towards: flat, a single HS
    key's nearest HS parent; hierarchical, any key's nearest ancestor (`profiles.coarser`);
    otherwise the global rate."""
    if config.shrinkage == "hierarchical":
        parent = profiles.coarser(key)
        while parent is not None:
            if profiles.key_name(parent) in done:
                return profiles.key_name(parent)
            parent = profiles.coarser(parent)
        return GLOBAL
    if len(key) == 1:
        level = profiles.HS_PARENT.get(key[0])
        while level is not None:
            if level in done:
                return level
            level = profiles.HS_PARENT.get(level)
    return GLOBAL


ProfileTotals = dict[str, np.ndarray]
Totals = Callable[[tuple[str, ...]], ProfileTotals]


def _decayed_keys(config: FeaturesConfig) -> set[tuple[str, ...]]:
    """The keys with decayed profiles: the single and cross keys (the target-statistic keys keep
    their cumulative statistics only)."""
    return {(k,) for k in config.profile_keys} | {tuple(k) for k in config.cross_keys}


def _profile_block(
    totals_of: Totals, lodged_day: np.ndarray, config: FeaturesConfig
) -> dict[str, np.ndarray]:
    """Profile features of every key from a function giving its as-of totals: the cumulative
    ones, the decayed ones at each half-life and the depth of history, as the config asks."""
    overall = totals_of(())
    rates: dict[str, np.ndarray] = {GLOBAL: profiles.global_rate(overall, config)}
    decayed_rates = {
        h: {GLOBAL: decay.decayed_rate(overall, h, config)} for h in config.profile_half_lives
    }
    out: dict[str, np.ndarray] = {}
    if config.history_depth:
        out[profiles.DEPTH] = profiles.days_known(lodged_day, overall[profiles.FIRST_DAY])
    by_key: dict[str, dict[str, np.ndarray]] = {}
    decayed_keys = _decayed_keys(config)
    for key in _computing_order(config):
        name = profiles.key_name(key)
        totals = totals_of(key)
        features, rates[name] = profiles.profile_features(
            name, totals, lodged_day, rates[_parent(key, rates, config)], config
        )
        for half_life, known in (decayed_rates if key in decayed_keys else {}).items():
            more, known[name] = decay.decayed_features(
                name, totals, known[_parent(key, known, config)], half_life, config
            )
            features.update(more)
        if config.history_depth and len(key) == 1 and key[0] in config.profile_keys:
            features[f"{name}_days_known"] = profiles.days_known(
                lodged_day, totals[profiles.FIRST_DAY]
            )
        by_key[name] = features
    for key in _ordered_keys(config):
        out.update(by_key[profiles.key_name(key)])
    return out


def totals_frame(
    sums: np.ndarray, maxes: np.ndarray | None, config: FeaturesConfig
) -> ProfileTotals:
    """A key's as-of profile totals as `profiles.profile_features` takes them: the summed event
    columns (views of ``sums``) and the last hit day (``maxes``; none known when None). Arrays,
    not a DataFrame: building one per key cost a fifth of a one-row request."""
    totals = {name: sums[:, j] for j, name in enumerate(profiles.event_columns(config))}
    totals[profiles.LAST_HIT] = np.full(len(sums), -np.inf) if maxes is None else maxes
    return totals


def raw_category_columns(config: FeaturesConfig) -> list[str]:
    """The declaration columns given to the model as categories (`features.raw_categories`,
    then `features.raw_ids`), each once."""
    return list(dict.fromkeys([*config.raw_categories, *config.raw_ids]))


def raw_levels(declarations: pd.DataFrame, config: FeaturesConfig) -> dict[str, list[Any]]:
    """Category levels of the raw columns given to the model (sorted, so order-free).

    The levels are the model's vocabulary, not statistics (no label enters them); a level that
    the training window never saw reaches the trees as missing (`TargetingModel.prepare`).
    """
    columns = [c for c in raw_category_columns(config) if c in declarations.columns]
    levels = {}
    for column in columns:
        values = declarations[column]
        if isinstance(values.dtype, pd.CategoricalDtype):  # used levels, counted from codes
            codes = values.cat.codes.to_numpy()
            used = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories)) > 0
            present = values.cat.categories[used]
        else:
            present = pd.Index(values.dropna().unique())
        levels[column] = sorted(set(present.astype(str)))
    return levels


# The families of the feature ablation; every trader id column (`features.raw_ids`) is a family
# of its own, named `ID_FAMILY + column`, so that each id enters only where it helps, and so is
# each half-life of the decayed profiles (`decay.family`: decayed_30...).
FAMILIES = (
    "raw",
    "profiles",
    "crosses",
    "target_stats",
    "depth",
    "valuation",
    "history",
    "calendar",
)
ID_FAMILY = "id_"


def feature_families(manifest: pd.DataFrame, config: FeaturesConfig) -> pd.Series:
    """Each feature's family (the unit of the feature selection and ablation), indexed by feature
    name: the manifest's stage, with each trader id (`features.raw_ids`) a family of its own
    (`id_importer`...), the profiles of cross keys (`features.cross_keys`) and of the
    target-statistic keys (`features.target_stat_keys`) apart from single-key profiles, the depth
    of history (`depth`) and each half-life's decayed profiles (`decayed_<days>`) apart too."""
    names = manifest["name"].astype(str)
    family = manifest["stage"].astype(str).to_numpy(dtype=object)
    of_derived = _derived_families(config)
    derived = (family == "profiles") & names.isin(list(of_derived)).to_numpy()
    raw = family == "raw"
    for column in config.raw_ids:
        family[raw & (names == RAW_NAMES.get(column, column)).to_numpy()] = ID_FAMILY + column
    single = {profiles.key_name((k,)) for k in config.profile_keys}
    for keys, label in ((config.cross_keys, "crosses"), (config.target_stat_keys, "target_stats")):
        prefixes = tuple(
            profiles.key_name(key) + "_"
            for key in map(tuple, keys)
            if profiles.key_name(key) not in single
        )
        if prefixes:
            family[(family == "profiles") & names.str.startswith(prefixes).to_numpy()] = label
    family[derived] = names[derived].map(of_derived).to_numpy()
    return pd.Series(family, index=names.to_numpy(), name="family")


def _derived_families(config: FeaturesConfig) -> dict[str, str]:
    """The family of each depth (`depth`) and decayed (`decayed_<days>`) profile feature."""
    names = [profiles.key_name(key) for key in _decayed_keys(config)]
    out = {
        name: decay.family(half_life)
        for half_life in config.profile_half_lives
        for key_name in names
        for name in decay.describe(key_name, half_life)
    }
    if config.history_depth:
        out.update(dict.fromkeys(profiles.describe_depth(config.profile_keys), "depth"))
    return out


Levels = Mapping[str, Sequence[Any] | pd.CategoricalDtype]


def _as_levels(values: pd.Series, levels: Sequence[Any] | pd.CategoricalDtype) -> pd.Categorical:
    """``values`` as text categories with exactly ``levels`` (others become missing). A dtype
    given as it is keeps its hash table from one call to the next (serving: the snapshot's)."""
    dtype = levels if isinstance(levels, pd.CategoricalDtype) else category_dtype(levels)
    if isinstance(values.dtype, pd.CategoricalDtype):
        # -1 (missing) last: a column with no level at all (every value missing) maps to -1 too
        found = dtype.categories.get_indexer(values.cat.categories.astype(str))
        codes = np.append(found, -1)[values.cat.codes.to_numpy()]
    else:
        present = values.notna().to_numpy()
        codes = np.full(len(values), -1, dtype=np.int64)
        codes[present] = dtype.categories.get_indexer(values[present].astype(str))
    return pd.Categorical.from_codes(codes, dtype=dtype)


def category_dtype(levels: Sequence[Any]) -> pd.CategoricalDtype:
    """The unordered category dtype of a raw column's levels (`raw_levels`)."""
    return pd.CategoricalDtype(pd.Index(levels), ordered=False)


def _raw(
    declarations: pd.DataFrame, levels: Levels
) -> tuple[dict[str, pd.Series], dict[str, np.ndarray]]:
    categories = {c: pd.Series(_as_levels(declarations[c], levels[c])) for c in levels}
    floats = {
        c: declarations[c].to_numpy(dtype=np.float64, na_value=np.nan)
        for c in RAW_FLOATS
        if c in declarations.columns
    }
    return categories, floats


def _calendar(declarations: pd.DataFrame) -> dict[str, np.ndarray]:
    lodged = declarations["lodged_at"].dt
    return {
        "day_of_week": lodged.dayofweek.to_numpy(np.float64),
        "month": lodged.month.to_numpy(np.float64),
    }


def _descriptions(config: FeaturesConfig) -> dict[str, str]:
    out = {
        "day_of_week": "day of the week of lodging (0 Monday)",
        "month": "month of lodging",
        "quantity": "declared quantity in supplementary units",
        "net_mass_kg": "declared net mass (kg)",
        "declared_value": "declared customs value",
        "duty_rate": "ad valorem duty rate",
        "declared_duty": "duty declared by the trader",
    }
    for key in _ordered_keys(config):
        out.update(profiles.describe(profiles.key_name(key)))
    for key in _decayed_keys(config):
        for half_life in config.profile_half_lives:
            out.update(decay.describe(profiles.key_name(key), half_life))
    out.update(profiles.describe_depth(config.profile_keys))
    out.update(valuation.describe())
    out.update(history.describe(config))
    return out


def _assemble(
    stage_features: dict[str, dict[str, np.ndarray]],
    categories: dict[str, pd.Series],
    config: FeaturesConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """X (float32 columns, then categories) and its manifest, in the config's stage order."""
    descriptions = _descriptions(config)
    rows = []
    for stage in config.stages:
        for name in stage_features.get(stage, {}):
            rows.append((name, "float32", stage, descriptions.get(name, name)))
    columns: dict[str, Any] = {}
    for stage in config.stages:
        features = stage_features.get(stage, {})
        for name in list(features):
            columns[name] = np.asarray(features.pop(name), dtype=np.float32)
    for column, series in categories.items():
        name = RAW_NAMES.get(column, column)
        columns[name] = series.array
        rows.append((name, "category", "raw", f"declared {column} (category)"))
    # copy=False keeps one block per column: no second copy of every feature (memory at 4M rows).
    X = pd.DataFrame(columns, copy=False)
    manifest = pd.DataFrame(rows, columns=["name", "dtype", "stage", "description"])
    return X, manifest


def _float32(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The stage's columns as float32 (the dtype of X), halving what is held until assembly."""
    return {name: np.asarray(values, dtype=np.float32) for name, values in features.items()}


def run_stages(
    declarations: pd.DataFrame,
    config: FeaturesConfig,
    profile_totals: Totals,
    valuation_of: Callable[[], dict[str, np.ndarray]],
    history_of: Callable[[], dict[str, np.ndarray]],
    levels: Levels,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """X and its manifest from the configured stages (`features.stages`), given each key's
    profile totals, the valuation and history features as functions (run only when their stage
    is on), and the raw columns' levels; shared by training, the chunked build and serving."""
    lodged_day = (
        declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        / profiles.NS_PER_DAY
    )
    stages = set(config.stages)
    features: dict[str, dict[str, np.ndarray]] = {}
    categories, floats = _raw(declarations, levels) if "raw" in stages else ({}, {})
    features["raw"] = floats
    if "profiles" in stages:
        features["profiles"] = _profile_block(profile_totals, lodged_day, config)
    if "valuation" in stages:
        features["valuation"] = _float32(valuation_of())
    if "history" in stages:
        features["history"] = _float32(history_of())
    if "calendar" in stages:
        features["calendar"] = _calendar(declarations)
    return _assemble(features, categories, config)


def _lodged_day(frame: pd.DataFrame) -> np.ndarray:
    """Each row's lodging time in days since the epoch (float64)."""
    return (
        frame["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / profiles.NS_PER_DAY
    )


def stream_totals(
    frame: pd.DataFrame, n_query: int, events: profiles.OutcomeEvents, config: FeaturesConfig
) -> Totals:
    """Profile totals (`totals_frame`, with the decayed counts and first declarations the config
    asks for) of the first ``n_query`` rows of ``frame`` as of their lodging: the earlier of
    those rows and the outcome ``events``, whose declarations are the rows ``events.row`` of
    ``frame``. One as-of join prepared for every key; a call overwrites the totals the previous
    call returned. Decayed counts are joined scaled to a reference day (`decay.scaled_events`)."""
    times = frame["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)[:n_query]
    width = len(profiles.event_columns(config))
    decayed = decay.decayed_columns(config)
    day = _lodged_day(frame) if decayed or config.history_depth else np.zeros(0)
    own = np.ones((n_query, 1))  # a declaration counts in the activity of its keys
    event_values = np.zeros((len(events.row), width + len(decayed)))
    event_values[:, 1:width] = events.values
    ref = 0.0
    if decayed:
        ref = decay.reference_day([day[:n_query], day[events.row]], config)
        event_values[:, width:] = decay.scaled_events(events.values, day[events.row], ref, config)
    join = profiles.AsOfJoin(
        times,
        profiles.EventSums(events.known_at, event_values, events.last_hit_day),
        profiles.OwnActivity(own, columns=[0]),
        reuse_output=True,  # each key's totals become its features before the next key's
    )

    def totals(key: tuple[str, ...]) -> ProfileTotals:
        (codes,) = profiles.column_codes([frame], key)
        sums, maxes = join.by(codes[:n_query], codes[events.row])
        out = totals_frame(sums, maxes, config)
        if decayed:
            out.update(decay.rescaled(sums[:, width:], day[:n_query], ref, config))
        if config.history_depth:
            out[profiles.FIRST_DAY] = profiles.first_before(codes[:n_query], day[:n_query])
        return out

    return totals


def table_extras(config: FeaturesConfig) -> list[str]:
    """The profile table's columns beyond the summed ones and the last hit, as the config asks:
    each key's first declaration day and its decayed sums' logarithms (`decay`)."""
    first = [profiles.FIRST_DAY] if config.history_depth else []
    return first + [d.log_column for d in decay.decayed_columns(config)]


def _table_maxes(table: pd.DataFrame, config: FeaturesConfig) -> np.ndarray:
    """What the as-of join takes as maxima of a profile table (one row per key, so a maximum
    reads the row): the last hit day, or with `table_extras` a matrix of it, the negated first
    declaration day and the decayed logarithms."""
    last_hit = table[profiles.LAST_HIT].to_numpy(np.float64)
    extras = table_extras(config)
    if not extras:
        return last_hit
    values = table[extras].to_numpy(np.float64)
    if config.history_depth:
        values[:, 0] = -values[:, 0]
    return np.column_stack([last_hit, values])


def joined_totals(
    sums: np.ndarray, maxes: np.ndarray | None, query_day: np.ndarray, config: FeaturesConfig
) -> ProfileTotals:
    """A key's totals from its profile table's row joined to each query (`table_sums`, or the
    snapshot's lookups): `totals_frame`, and the `table_extras` read back at ``query_day``."""
    if maxes is None or maxes.ndim == 1:
        return totals_frame(sums, maxes, config)
    out = totals_frame(sums, maxes[:, 0], config)
    logs = maxes[:, 1:]
    if config.history_depth:
        out[profiles.FIRST_DAY] = -maxes[:, 1]
        logs = maxes[:, 2:]
    out.update(decay.from_logs(logs, query_day, config))
    return out


def combine_totals(now: ProfileTotals, before: ProfileTotals) -> ProfileTotals:
    """Totals of two disjoint stretches of history added: sums add, the last hit is the latest,
    the first declaration the earliest."""
    out = {}
    for name, values in now.items():
        if name == profiles.LAST_HIT:
            out[name] = np.maximum(values, before[name])
        elif name == profiles.FIRST_DAY:
            out[name] = np.minimum(values, before[name])
        else:
            out[name] = values + before[name]
    return out


def table_sums(
    declarations: pd.DataFrame,
    table: pd.DataFrame,
    key: tuple[str, ...],
    as_of: pd.Timestamp,
    config: FeaturesConfig,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Profile sums (and last hits, or `_table_maxes`) of each declaration's key in a profile
    table valid from ``as_of`` on (a declaration lodged before it is counted from it; the chunked
    build's carried tables). Serving reads the same sums from `SnapshotLookups`."""
    times = declarations["lodged_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    codes, table_codes = profiles.column_codes([declarations, table], key)
    return profiles.as_of_sum(
        codes,
        np.maximum(times, as_of.value),
        table_codes,
        profiles.EventSums(
            np.full(len(table), as_of.value - 1, np.int64),
            table[profiles.event_columns(config)].to_numpy(np.float64),
            _table_maxes(table, config),
        ),
    )


def table_totals(
    declarations: pd.DataFrame,
    table: pd.DataFrame,
    key: tuple[str, ...],
    as_of: pd.Timestamp,
    config: FeaturesConfig,
) -> ProfileTotals:
    """`table_sums` as a key's totals (`joined_totals`), decayed to each lodging (counted from
    ``as_of`` when lodged before it)."""
    query_day = np.maximum(_lodged_day(declarations), as_of.value / profiles.NS_PER_DAY)
    return joined_totals(*table_sums(declarations, table, key, as_of, config), query_day, config)


def _grouped(
    group: np.ndarray, values: np.ndarray, maxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of ``values`` and maxima of ``maxes`` per group (in group order), and the first row
    of each group; one grouping serves the three (a dict of aggregations regroups per column)."""
    width = values.shape[1]
    frame = pd.DataFrame(values, copy=False)
    frame["max"] = maxes
    frame["row"] = np.arange(len(frame))
    grouped = frame.groupby(group, sort=True)
    sums = grouped[list(range(width))].sum().to_numpy(np.float64)
    return sums, grouped["max"].max().to_numpy(), grouped["row"].min().to_numpy()


def _extra_rows(
    frame: pd.DataFrame, n_declarations: int, events: profiles.OutcomeEvents, config: FeaturesConfig
) -> np.ndarray | None:
    """The `table_extras` of each input row of `profile_tables` (the first ``n_declarations``
    rows of ``frame``, then the outcome ``events``): a declaration's lodging day (inf for an
    event), an event's decayed logarithms (`decay.log_events`; -inf for a declaration). None
    when the config asks for no extra column."""
    if not table_extras(config):
        return None
    day = _lodged_day(frame)
    n_events = len(events.row)
    parts = []
    if config.history_depth:
        parts.append(np.concatenate([day[:n_declarations], np.full(n_events, np.inf)])[:, None])
    decayed = decay.decayed_columns(config)
    if decayed:
        logs = np.full((n_declarations + n_events, len(decayed)), -np.inf)
        logs[n_declarations:] = decay.log_events(events.values, day[events.row], config)
        parts.append(logs)
    return np.hstack(parts)


def _grouped_extras(group: np.ndarray, values: np.ndarray, config: FeaturesConfig) -> np.ndarray:
    """`table_extras` per group (in group order, as `_grouped`): the earliest first declaration
    day, the decayed logarithms added by log-sum-exp."""
    if not config.history_depth:
        return decay.group_logsumexp(group, values)
    first = pd.Series(values[:, 0], copy=False).groupby(group, sort=True).min().to_numpy()
    return np.column_stack([first, decay.group_logsumexp(group, values[:, 1:])])


def profile_tables(
    frame: pd.DataFrame,
    n_declarations: int,
    events: profiles.OutcomeEvents,
    config: FeaturesConfig,
    prior: dict[str, pd.DataFrame] | None = None,
    object_keys: bool = True,
) -> dict[str, pd.DataFrame]:
    """One profile table per key: the first ``n_declarations`` rows of ``frame`` counted as
    declarations, plus the outcome ``events`` (declarations at rows ``events.row``), added to
    the ``prior`` tables when given. Key columns are objects (a snapshot's), or keep the dtypes
    of ``frame`` (categories shared with later chunks join on their codes)."""
    columns = profiles.event_columns(config)
    n_rows = n_declarations + len(events.row)
    values = np.zeros((n_rows, len(columns)))
    values[:n_declarations, 0] = 1.0
    values[n_declarations:, 1:] = events.values
    maxes = np.concatenate([np.full(n_declarations, -np.inf), events.last_hit_day])
    rows = np.concatenate([np.arange(n_declarations), events.row])
    extras, extra_rows = table_extras(config), _extra_rows(frame, n_declarations, events, config)
    tables: dict[str, pd.DataFrame] = {}
    for key in [(), *profiles.profile_keys(config)]:
        name = profiles.key_name(key) or "__global__"
        keys = frame[list(key)]
        if prior is None:
            (codes,) = profiles.column_codes([frame], key)
            group, stacked_values, stacked_maxes = codes[rows], values, maxes
        else:
            old = prior[name]
            codes, old_codes = profiles.column_codes([frame, old], key)
            group = np.concatenate([old_codes, codes[rows]])
            stacked_values = np.vstack([old[columns].to_numpy(np.float64), values])
            stacked_maxes = np.concatenate([old[profiles.LAST_HIT].to_numpy(np.float64), maxes])
        sums, last_hit, first = _grouped(group, stacked_values, stacked_maxes)
        table = pd.DataFrame(sums, columns=columns)
        table[profiles.LAST_HIT] = last_hit
        if extra_rows is not None:  # the prior table's values first, as the groups stack them
            before = [] if prior is None else [prior[name][extras].to_numpy(np.float64)]
            table[extras] = _grouped_extras(group, np.vstack([*before, extra_rows]), config)
        if prior is None:
            picked = keys.iloc[rows[first]]
        else:  # the first row of a group is in the prior table whenever the group was there
            old_rows = first < len(prior[name])
            picked = profiles.stack(
                [
                    prior[name][list(key)].iloc[first[old_rows]],
                    keys.iloc[rows[first[~old_rows] - len(prior[name])]],
                ]
            )
            order = np.concatenate([np.flatnonzero(old_rows), np.flatnonzero(~old_rows)])
            picked = picked.iloc[np.argsort(order)]  # back to the table's order
        if object_keys:
            picked = picked.astype(object)
        tables[name] = pd.concat(
            [picked.reset_index(drop=True), table.reset_index(drop=True)], axis=1
        )
    return tables


# --------------------------------------------------------------------------------------------
# Training


def build_feature_set(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, config: FeaturesConfig
) -> FeatureSet:
    """Features of every declaration as of its lodging time, and the labels of its outcome.

    Rows are ordered by (lodged_at, declaration_id). ``y`` is 1.0 / 0.0 for declarations with an
    inspected outcome and NaN otherwise; ``label_known_at`` is when that outcome counts.
    """
    decl = sorted_declarations(declarations)
    out, row = aligned_outcomes(outcomes, decl, config)
    events = profiles.outcome_events(decl["lodged_at"], out, row, config)
    X, manifest = run_stages(
        decl,
        config,
        stream_totals(decl, len(decl), events, config),
        lambda: valuation.valuation_features(decl, config),
        lambda: history.history_features(decl, config),
        raw_levels(decl, config),
    )
    return FeatureSet(X=X, manifest=manifest, **label_columns(decl, out, row))


def label_columns(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, row: np.ndarray
) -> dict[str, pd.Series]:
    """Metadata and labels row-aligned with the declarations (the FeatureSet's columns other
    than X): ``row`` is each outcome's declaration row, as `aligned_outcomes` returns it."""
    n = len(declarations)
    inspected = outcomes["inspected"].to_numpy(dtype=bool)
    r = row[inspected]
    y = np.full(n, np.nan)
    y[r] = outcomes["hit"].to_numpy(dtype=np.float64)[inspected]
    label_known_at = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    label_known_at.iloc[r] = outcomes["known_at"].to_numpy(dtype="datetime64[ns]")[inspected]
    revenue = np.full(n, np.nan)
    revenue[row] = outcomes["revenue_recovered"].to_numpy(dtype=np.float64, na_value=np.nan)
    weight = np.ones(n)
    probability = outcomes["selection_probability"].to_numpy(dtype=np.float64, na_value=np.nan)
    known = probability > 0
    weight[row[known]] = 1.0 / probability[known]
    recorded = np.full(n, np.nan)
    recorded[row[known]] = probability[known]
    reason = pd.Series(pd.NA, index=range(n), dtype=object)
    reason.iloc[row] = outcomes["selection_reason"].astype(object).to_numpy()
    return {
        "declaration_id": declarations["declaration_id"].reset_index(drop=True),
        "lodged_at": declarations["lodged_at"].reset_index(drop=True),
        "office": declarations["office"].reset_index(drop=True),
        "y": pd.Series(y),
        "revenue_recovered": pd.Series(revenue),
        "sample_weight": pd.Series(weight),
        "selection_reason": reason.astype("category"),
        "label_known_at": label_known_at,
        "selection_probability": pd.Series(recorded),
    }


# --------------------------------------------------------------------------------------------
# Snapshot and serving


def build_snapshot(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    config: FeaturesConfig,
    as_of: pd.Timestamp,
) -> Snapshot:
    """What is known at ``as_of``: declarations lodged and outcomes known strictly before it."""
    as_of = pd.Timestamp(as_of)
    decl = sorted_declarations(declarations)
    # The category levels are the model's input vocabulary, not statistics: they come from every
    # declaration given (as in `build_feature_set`), so served categories equal training's.
    levels = raw_levels(decl, config)
    decl = decl.loc[decl["lodged_at"] < as_of].reset_index(drop=True)
    out, row = aligned_outcomes(outcomes, decl, config)
    known = (out["known_at"] < as_of).to_numpy()
    out, row = out.loc[known].reset_index(drop=True), row[known]
    events = profiles.outcome_events(decl["lodged_at"], out, row, config)
    tables = profile_tables(decl, len(decl), events, config)
    return Snapshot(
        as_of=as_of,
        config=config.model_dump(mode="json"),
        profiles=tables,
        valuation=valuation.valuation_state(decl, as_of),
        history=history.history_state(decl, as_of, config),
        categories=levels,
    )


def other_settings(snapshot: Snapshot, config: FeaturesConfig) -> list[str]:
    """The feature settings the snapshot was built with that differ from `config`'s."""
    stored = snapshot.config
    given = config.model_dump(mode="json")
    # A setting the snapshot predates counts as its default (a snapshot saved before it existed).
    defaults = FeaturesConfig().model_dump(mode="json")
    return sorted(
        k
        for k in given.keys() | stored.keys()
        if given.get(k) != stored.get(k, defaults.get(k)) and k not in HOW_BUILT
    )


@dataclass(frozen=True)
class SnapshotLookups:
    """A snapshot's tables as per-entity lookups (`lookup.EntityLookup`), and its raw columns'
    category dtypes: what `attach` reads a request's features from."""

    settings: dict[str, Any]  # the feature settings they were built for
    vocabulary: Vocabulary
    profiles: dict[str, EntityLookup]
    valuation: valuation.ValuationLookup
    history: history.HistoryLookup
    categories: dict[str, pd.CategoricalDtype]


def snapshot_lookups(snapshot: Snapshot, config: FeaturesConfig) -> SnapshotLookups:
    """The lookups of a snapshot's profile tables (the keys of `config`), valuation and history
    states, with the values the as-of join sums (`table_sums`, `valuation._state_sums`,
    `history._importer_sums`)."""
    keys = [(), *profiles.profile_keys(config)]
    names = [profiles.key_name(key) or "__global__" for key in keys]
    keyed = [(snapshot.profiles[name], list(key)) for name, key in zip(names, keys, strict=True)]
    vocabulary = Vocabulary(
        keyed + valuation.key_tables(snapshot.valuation) + history.key_tables(snapshot.history)
    )
    columns = profiles.event_columns(config)
    return SnapshotLookups(
        settings=config.model_dump(mode="json"),
        vocabulary=vocabulary,
        profiles={
            name: EntityLookup(
                KeyIndex(table, key, vocabulary),
                table[columns].to_numpy(np.float64),
                maxes=_table_maxes(table, config),
            )
            for name, (table, key) in zip(names, keyed, strict=True)
        },
        valuation=valuation.lookup(snapshot.valuation, vocabulary),
        history=history.lookup(snapshot.history, vocabulary),
        categories={k: category_dtype(v) for k, v in snapshot.categories.items()},
    )


def attach(declarations: pd.DataFrame, snapshot: Snapshot, config: FeaturesConfig) -> FeatureSet:
    """Features of new declarations from a snapshot (serving); y is NaN.

    Rows come back in (lodged_at, declaration_id) order, none dropped. An entity the snapshot
    has never seen gets empty totals, hence its parent level's rate. Each table is read through
    the snapshot's per-entity lookups (`Snapshot.lookups`): the sums the as-of join gives a
    declaration lodged at or after the cut-off, without joining whole tables per request.
    """
    different = other_settings(snapshot, config)
    if different:
        raise ValueError(
            f"the snapshot was built with other feature settings ({', '.join(different)}): "
            "rebuild it with this config, or pass the config it was built with"
        )
    decl = sorted_declarations(declarations)
    lookups = snapshot.lookups(config)
    keys = RequestKeys(decl, lookups.vocabulary)
    # Decayed counts at each lodging, counted from the cut-off when lodged before it (`table_sums`)
    query_day = np.maximum(_lodged_day(decl), snapshot.as_of.value / profiles.NS_PER_DAY)

    def totals(key: tuple[str, ...]) -> ProfileTotals:
        sums, maxes = lookups.profiles[profiles.key_name(key) or GLOBAL].take(keys)
        return joined_totals(sums, maxes, query_day, config)

    X, manifest = run_stages(
        decl,
        config,
        totals,
        lambda: valuation.attach_valuation(decl, lookups.valuation, keys, config),
        lambda: history.attach_history(decl, lookups.history, keys, config),
        lookups.categories,
    )
    n = len(decl)
    empty = pd.DataFrame({"inspected": np.zeros(0, bool), "hit": np.zeros(0, bool)}).assign(
        known_at=pd.Series(dtype="datetime64[ns]"),
        revenue_recovered=pd.Series(dtype=float),
        selection_probability=pd.Series(dtype=float),
        selection_reason=pd.Series(dtype=object),
    )
    labels = label_columns(decl, empty, np.zeros(0, np.int64))
    assert len(labels["y"]) == n
    return FeatureSet(X=X, manifest=manifest, **labels)
