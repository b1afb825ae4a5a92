"""A request of a few declarations is validated as the same rows inside a large file: the
few-values path (distinct values one by one) cleans and quarantines as pandas' string methods."""

from __future__ import annotations

import pandas as pd
from helpers.ingest import declarations
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest.schema import FEW_VALUES, _as_text, validate_declarations

# Texts that cleaning changes or refuses: blanks around, a float's '.0', empty, a NUL byte.
MESSY = st.sampled_from(
    [" IMP1", "IMP1 ", "\tIMP2\n", "30.0", "0030.0", "30.5", "", "   ", "A\0B", "Ünï", "7.0.0"]
)


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(MESSY | st.text(max_size=8), min_size=1, max_size=6, unique=True))
def test_a_few_distinct_texts_read_as_they_do_among_many(texts: list[str]) -> None:
    few = pd.Index(texts, dtype=object)
    padding = pd.Index([f"PAD-{i}" for i in range(FEW_VALUES + 1)], dtype=object)
    many = few.append(padding.difference(few, sort=False))
    assert list(_as_text(few)) == list(_as_text(many)[: len(few)])


@settings(max_examples=15, deadline=None)
@given(importers=st.lists(MESSY, min_size=1, max_size=4), sellers=st.lists(MESSY, min_size=4))
def test_a_request_is_cleaned_and_quarantined_as_in_a_large_file(
    importers: list[str], sellers: list[str]
) -> None:
    n = len(importers)
    large = declarations(rows=FEW_VALUES * 2 + n, seed=3)
    large["importer"] = [*importers, *(f"IMP-{i}" for i in range(len(large) - n))]
    large["seller"] = [*sellers[:n], *([sellers[-1]] * (len(large) - n))]
    request = large.iloc[:n]
    clean_few, report_few = validate_declarations(request)
    clean_many, report_many = validate_declarations(large)
    assert (report_few.quarantined["reason"].tolist()) == (
        report_many.quarantined.loc[report_many.quarantined["row"] <= n, "reason"].tolist()
    )
    mine = clean_many["declaration_id"].isin(request["declaration_id"]).to_numpy()
    for column in ("declaration_id", "importer", "seller"):
        assert clean_few[column].astype(object).tolist() == (
            clean_many.loc[mine, column].astype(object).tolist()
        )
