"""The tuning folds inside the plan's windows, and the labelled rows of a window.

The final fit's windows are the run plan's (`pipeline.plan`). Tuning uses prequential (rolling)
folds: an expanding training window, then a validation block after a gap, the last block being
the plan's validation window. A window's labelled rows count only when their label was known
before the next window starts (`rows_in`): a model deployed at that moment could not have used a
later label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import SplitConfig
from pipeline.features.featureset import FeatureSet
from pipeline.plan import Windows, check_windows
from pipeline.timeaxis import Window, datetimes


def _block_start(
    day_hits: pd.Series,
    end: pd.Timestamp,
    length: pd.Timedelta,
    hits: int,
    earliest: pd.Timestamp,
    in_block: float,
) -> pd.Timestamp:
    """The start of a validation block ending at `end`: `length` before it, or earlier, a whole
    day at a time, until the block holds `hits` labelled hits (never before `earliest`). `in_block`:
    the hits of the block of `length` itself; one that holds enough is kept as it is, not moved
    back to the midnight before its first, partial day."""
    start = end - length
    if hits <= 0 or start <= earliest or in_block >= hits:
        return start
    before = day_hits[(day_hits.index < end) & (day_hits.index >= earliest)]
    # Hits in [day, end) for each day, latest day first: the latest start that holds enough.
    held = before.iloc[::-1].cumsum()
    enough = held[(held >= hits) & (held.index <= start)]
    if len(enough):
        return min(start, pd.Timestamp(enough.index[0]))
    return min(start, pd.Timestamp(before.index[0])) if len(before) else start


def rolling_folds(
    lodged_at: pd.Series,
    config: SplitConfig,
    windows: Windows,
    hits: np.ndarray | None = None,
) -> list[tuple[Window, Window]]:
    """Prequential folds for tuning, oldest first: expanding train, gap, a validation block.

    The last fold's validation block is the final fit's validation window; each earlier block
    ends where the next one starts. With `split.min_fold_hits` and `hits` (a labelled-hit flag
    per declaration) a block reaches back past its `valid_days` until it holds that many hits, so
    that every fold can tell trials apart. Nothing after the validation window is ever used.
    """
    gap = pd.Timedelta(days=config.gap_days)
    length = windows.valid.end - windows.valid.start
    day_hits = pd.Series(dtype=float)
    if hits is not None and config.min_fold_hits > 0:
        days = datetimes(lodged_at).dt.normalize()
        day_hits = pd.Series(np.asarray(hits, dtype=float)).groupby(days.to_numpy()).sum()
    # A block never reaches back so far that its fold trains on less than half of the final
    # fit's training window.
    earliest = windows.train.start + (windows.valid.start - windows.train.start) / 2
    blocks: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    end = windows.valid.end
    flags = np.asarray(hits, dtype=float) if len(day_hits) else None
    for _ in range(config.folds):
        # the block's own hits, needed only where blocks are sized by hits
        block = Window("block", end - length, end)
        in_block = 0.0 if flags is None else float(flags[block.contains(lodged_at)].sum())
        floor = earliest.ceil("D")
        start = _block_start(day_hits, end, length, config.min_fold_hits, floor, in_block)
        blocks.append((start, end))
        end = start
    folds: list[tuple[Window, Window]] = []
    for number, (start, end) in enumerate(reversed(blocks)):
        valid = Window(f"fold{number}-valid", start, end)
        train = Window(f"fold{number}-train", windows.train.start, valid.start - gap)
        check_windows([train, valid], gap, lodged_at, windows.valid.end)
        folds.append((train, valid))
    return folds


def rows_in(fs: FeatureSet, window: Window, labels_known_by: pd.Timestamp | None) -> np.ndarray:
    """Labelled declarations lodged in `window` whose label was known before `labels_known_by`.

    None means every known label counts (evaluation on the test window). A row without a
    `label_known_at` is left out when a bound is given.
    """
    mask = window.contains(fs.lodged_at) & fs.y.notna().to_numpy()
    if labels_known_by is not None:
        known = datetimes(fs.label_known_at)
        mask &= np.asarray((known < labels_known_by).fillna(False), dtype=bool)
    return np.asarray(mask, dtype=bool)
