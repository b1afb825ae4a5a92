"""The as-of join that training and serving share, against a brute-force definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.features.history import count_before
from pipeline.features.profiles import EventSums, OwnActivity, as_of_sum, column_codes


def brute_force(
    q_codes: np.ndarray,
    q_times: np.ndarray,
    e_codes: np.ndarray,
    e_times: np.ndarray,
    e_values: np.ndarray,
    e_maxes: np.ndarray,
    own: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: events of its key strictly before it, plus own values of earlier queries."""
    sums = np.zeros((len(q_codes), e_values.shape[1]))
    maxes = np.full(len(q_codes), -np.inf)
    for i, (code, time) in enumerate(zip(q_codes, q_times, strict=True)):
        before = (e_codes == code) & (e_times < time)
        sums[i] = e_values[before].sum(axis=0)
        if before.any():
            maxes[i] = e_maxes[before].max()
        earlier = (q_codes == code) & (q_times < time)
        sums[i, 0] += own[earlier].sum()
    return sums, maxes


@settings(max_examples=60, deadline=None)
@given(
    n_query=st.integers(1, 40),
    n_event=st.integers(0, 30),
    keys=st.integers(1, 4),
    instants=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_as_of_sum_counts_only_the_strict_past_of_the_same_key(
    n_query: int, n_event: int, keys: int, instants: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    q_codes = rng.integers(0, keys, n_query)
    q_times = rng.integers(0, instants, n_query).astype(np.int64)
    e_codes = rng.integers(0, keys, n_event)
    e_times = rng.integers(0, instants, n_event).astype(np.int64)
    e_values = rng.integers(0, 5, (n_event, 2)).astype(float)
    e_maxes = rng.normal(size=n_event)
    own = rng.integers(1, 3, (n_query, 1)).astype(float)

    sums, maxes = as_of_sum(
        q_codes, q_times, e_codes, EventSums(e_times, e_values, e_maxes), OwnActivity(own, [0])
    )
    expected_sums, expected_maxes = brute_force(
        q_codes, q_times, e_codes, e_times, e_values, e_maxes, own[:, 0]
    )
    np.testing.assert_array_equal(sums, expected_sums)
    np.testing.assert_array_equal(maxes, expected_maxes)


def test_as_of_sum_equals_merge_asof_on_the_cumulated_table() -> None:
    rng = np.random.default_rng(5)
    events = pd.DataFrame(
        {"key": rng.integers(0, 5, 300), "t": rng.integers(0, 1000, 300), "v": rng.random(300)}
    )
    table = events.groupby(["key", "t"], as_index=False)["v"].sum().sort_values("t", kind="stable")
    table["v"] = table.groupby("key")["v"].cumsum()
    queries = pd.DataFrame({"key": rng.integers(0, 6, 500), "t": rng.integers(0, 1100, 500)})
    joined = (
        pd.merge_asof(
            queries.reset_index().sort_values("t", kind="stable"),
            table,
            on="t",
            by="key",
            allow_exact_matches=False,
        )
        .set_index("index")
        .sort_index()
    )

    sums, _ = as_of_sum(
        queries["key"].to_numpy(),
        queries["t"].to_numpy(np.int64),
        events["key"].to_numpy(),
        EventSums(events["t"].to_numpy(np.int64), events[["v"]].to_numpy()),
    )
    np.testing.assert_allclose(sums[:, 0], joined["v"].fillna(0.0).to_numpy())


def test_column_codes_agree_across_frames_and_keep_missing_as_a_level() -> None:
    left = pd.DataFrame({"a": pd.Categorical(["x", "y", None]), "b": ["1", "2", "3"]})
    right = pd.DataFrame({"a": ["y", None, "z"], "b": ["2", "3", "1"]})
    lc, rc = column_codes([left, right], ["a", "b"])
    assert lc[1] == rc[0]  # (y, 2)
    assert lc[2] == rc[1]  # (missing, 3)
    assert len({*lc.tolist(), *rc.tolist()}) == 4  # (x,1) (y,2) (missing,3) (z,1)


@settings(max_examples=40, deadline=None)
@given(
    n_query=st.integers(1, 30),
    n_event=st.integers(0, 30),
    keys=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_count_before_counts_events_of_the_key_strictly_before(
    n_query: int, n_event: int, keys: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    q_codes = rng.integers(0, keys, n_query)
    probes = [rng.integers(0, 10, n_query).astype(np.int64) for _ in range(2)]
    e_codes = rng.integers(0, keys, n_event)
    e_times = rng.integers(0, 10, n_event).astype(np.int64)
    counts = count_before(q_codes, probes, e_codes, e_times)
    for times, got in zip(probes, counts, strict=True):
        expected = [
            ((e_codes == c) & (e_times < t)).sum() for c, t in zip(q_codes, times, strict=True)
        ]
        np.testing.assert_array_equal(got, expected)
