"""Per-entity lookups of a serving snapshot: each table's state at the cut-off, found by key.

A snapshot table holds the state of every entity as of the cut-off (profile totals and last hit
per key, reference sums per commodity group, the importers' counts). Serving used to attach a
request to each table with the as-of join (`profiles.as_of_sum`), which factorises the whole
table, every key, every request: for one declaration that was most of the request. A served
declaration is never before the cut-off (`attach` counts it from the cut-off on), so the join
always reads the entity's own row: `EntityLookup` takes those rows once, when the snapshot is
first used, and a request finds its rows with hash lookups on its own keys.

The sums and maxima are the join's (the same running kernel, over the same rows in the same
order), so served features equal the ones the join gives; the arithmetic that turns them into
features stays where training uses it (`profiles.profile_features`, `valuation._features`,
`history._assemble`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.features.profiles import _running

Codes = dict[str, np.ndarray]
FEW_ROWS = 64  # requests up to this many rows find their codes through a dict


class Vocabulary:
    """One code per value of each key column over a snapshot's tables (`profiles.column_codes`'s
    equality: a missing value is a level of its own, whatever its kind of null)."""

    def __init__(self, tables: Iterable[tuple[pd.DataFrame, Sequence[str]]]) -> None:
        seen: dict[str, list[np.ndarray]] = {}
        for table, columns in tables:
            for column in columns:
                seen.setdefault(column, []).append(_objects(table[column]))
        self.index: dict[str, pd.Index] = {}
        self.positions: dict[str, dict[Any, int]] = {}
        for column, parts in seen.items():
            values = np.concatenate(parts)
            present = values[~pd.isna(values)]
            self.index[column] = pd.Index(pd.unique(present), dtype=object)
            self.positions[column] = {v: i for i, v in enumerate(self.index[column])}

    def width(self, column: str) -> int:
        """Codes of a column range over 0..width-1: its values, then the missing value."""
        return len(self.index[column]) + 1

    def codes(self, frame: pd.DataFrame, columns: Iterable[str]) -> Codes:
        """Each column's codes for the rows of `frame`; -1 for a value no table holds."""
        out: Codes = {}
        for column in columns:
            if isinstance(frame[column].dtype, pd.CategoricalDtype) and len(frame) > FEW_ROWS:
                out[column] = self._category_codes(column, frame[column])
                continue
            values = _objects(frame[column])
            missing = pd.isna(values)
            null = len(self.index[column])
            if len(values) <= FEW_ROWS:
                # A few rows (a one-declaration request) through a dict: the same hash and
                # equality as pandas' index, without its fixed cost per call.
                positions = self.positions[column]
                found = [
                    null if gone else positions.get(value, -1)
                    for value, gone in zip(values, missing, strict=True)
                ]
                out[column] = np.array(found, dtype=np.int64)
                continue
            codes = np.full(len(values), null, dtype=np.int64)
            if not missing.all():
                codes[~missing] = self.index[column].get_indexer(values[~missing])
            out[column] = codes
        return out

    def _category_codes(self, column: str, values: pd.Series) -> np.ndarray:
        """`codes` of a category column through its levels: each level is looked up once, not
        once per row (a served batch's importer column: 20,000 rows, a few thousand levels)."""
        index = self.index[column]
        levels = index.get_indexer(values.cat.categories.to_numpy(dtype=object))
        # a level the tables lack is -1; a missing value (code -1) takes the null code, last
        by_level = np.append(levels, len(index)).astype(np.int64)
        return by_level[values.cat.codes.to_numpy()]


def _objects(values: pd.Series) -> np.ndarray:
    """A column's values as Python objects (a category column through its categories)."""
    return values.to_numpy(dtype=object)


class KeyIndex:
    """The entity of each row of a table by its key columns (dense ids), and of a query's rows.

    Columns are combined one at a time, each step's pairs renumbered by the table's own pairs,
    so ids stay below the table's length (no overflow however many columns a key has)."""

    def __init__(self, table: pd.DataFrame, columns: Sequence[str], vocabulary: Vocabulary):
        self.columns = list(columns)
        self.widths = [vocabulary.width(c) for c in self.columns]
        self.steps: list[np.ndarray] = []  # each step's pairs, sorted: their rank is their id
        codes = vocabulary.codes(table, self.columns)
        group = np.zeros(len(table), dtype=np.int64)
        for column, width in zip(self.columns, self.widths, strict=True):
            step, group = np.unique(group * width + codes[column], return_inverse=True)
            self.steps.append(step)
        self.groups = group.astype(np.int64, copy=False)
        self.n_groups = len(self.steps[-1]) if self.steps else min(len(table), 1)

    def find(self, keys: RequestKeys) -> np.ndarray:
        """The entity id of each request row; -1 when the table does not hold the entity."""
        n = keys.n
        codes = keys.of(self.columns)
        group = np.zeros(n, dtype=np.int64) if self.n_groups else np.full(n, -1, np.int64)
        for column, width, step in zip(self.columns, self.widths, self.steps, strict=True):
            if not len(step):
                return np.full(n, -1, dtype=np.int64)
            code = codes[column]
            pairs = np.where((group >= 0) & (code >= 0), group * width + code, -1)
            # Binary searches in the sorted pairs (pandas' hash lookup costs more per call
            # than a request of a few rows needs); a pair the table lacks is -1.
            at = np.minimum(np.searchsorted(step, pairs), len(step) - 1)
            group = np.where(step[at] == pairs, at, -1)
        return group


class RequestKeys:
    """The codes of a request's key columns, each column encoded once however many tables key
    on it (the importer column serves a dozen profiles, the history and the pairs)."""

    def __init__(self, frame: pd.DataFrame, vocabulary: Vocabulary) -> None:
        self.frame, self.vocabulary, self.n = frame, vocabulary, len(frame)
        self.codes: Codes = {}

    def of(self, columns: Sequence[str]) -> Codes:
        """The codes of `columns` (and of every column encoded before)."""
        missing = [c for c in columns if c not in self.codes]
        if missing:
            self.codes.update(self.vocabulary.codes(self.frame, missing))
        return self.codes


class EntityLookup:
    """Per entity of a table valid from before the cut-off, the sums of ``sums`` and the maximum
    of ``maxes`` (rows aligned with the table; a vector, or a matrix of several columns), as the
    as-of join gives them to every query at or after the cut-off: `as_of_sum(codes, at,
    table_codes, EventSums(cut_off - 1, sums, maxes))`."""

    def __init__(
        self,
        index: KeyIndex,
        sums: np.ndarray | None = None,
        maxes: np.ndarray | None = None,
    ) -> None:
        self.index = index
        groups, n_groups = index.groups, index.n_groups
        values = np.zeros((len(groups), 1)) if sums is None else np.asarray(sums, np.float64)
        # The join's running sum (and maximum) over the table's rows, read at each entity's last
        # row: what a query gets when every row of its key is before it.
        last = np.full(n_groups, -1, dtype=np.int64)
        np.maximum.at(last, groups, np.arange(len(groups)))
        totals = _running("sum", values, groups, n_groups)[last]
        totals[:, ~np.any(values != 0, axis=0)] = 0.0  # the join's zero for columns no row fills
        self.sums = np.vstack([totals, np.zeros((1, values.shape[1]))])  # row -1: no entity
        self.maxes: np.ndarray | None = None
        if maxes is not None:  # one column (a vector) or several (a matrix), kept as given
            given = np.asarray(maxes, np.float64)
            flat = given.reshape(len(given), int(np.prod(given.shape[1:])))
            running = _running("max", flat, groups, n_groups)[last]
            running = np.vstack([running, np.full((1, flat.shape[1]), -np.inf)])
            self.maxes = running.reshape((len(running), *given.shape[1:]))

    def take(self, keys: RequestKeys) -> tuple[np.ndarray, np.ndarray | None]:
        """The sums (rows x columns) and maxima (or None) of each request row's entity; zeros
        and -inf for an entity the table does not hold."""
        group = self.index.find(keys)
        return self.sums[group], None if self.maxes is None else self.maxes[group]
