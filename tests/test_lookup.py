"""Prompt-lookup drafting (runtime/lookup.py): the index matches a brute-force scan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glm_lsp.runtime.lookup import NgramIndex, reference_draft

tokens = st.lists(st.integers(0, 5), max_size=60)  # a small alphabet: many repeats


@settings(max_examples=300, deadline=None)
@given(tokens, st.integers(0, 9), st.integers(1, 4), st.integers(1, 4))
def test_draft_matches_the_brute_force_reference_after_every_token(
    toks: list[int], limit: int, a: int, b: int
) -> None:
    min_n, max_n = min(a, b), max(a, b)
    index = NgramIndex(max_n=max_n, min_n=min_n)
    assert index.draft(limit) == []
    for i, t in enumerate(toks):
        index.append(t)
        assert index.draft(limit) == reference_draft(toks[: i + 1], limit, max_n, min_n)


@settings(max_examples=100, deadline=None)
@given(tokens, tokens, st.integers(0, 60))
def test_sync_extends_or_rebuilds_to_exactly_the_given_history(
    first: list[int], second: list[int], cut: int
) -> None:
    index = NgramIndex()
    index.sync(first)
    target = first[:cut] + second  # a continuation, or a rewritten history
    index.sync(target)
    fresh = NgramIndex()
    fresh.extend(target)
    assert index.tokens == target
    assert index._latest == fresh._latest
    assert index.draft(8) == reference_draft(target, 8)


@settings(max_examples=200, deadline=None)
@given(tokens, st.integers(0, 60), tokens)
def test_truncate_is_exactly_never_having_appended_the_rest(
    first: list[int], cut: int, more: list[int]
) -> None:
    index = NgramIndex(max_n=4, min_n=2)
    index.extend(first)
    index.truncate(cut)
    fresh = NgramIndex(max_n=4, min_n=2)
    fresh.extend(first[:cut])
    assert (index.tokens, index._latest, index._previous) == (
        fresh.tokens,
        fresh._latest,
        fresh._previous,
    )
    index.extend(more)  # and it goes on as the fresh one would
    fresh.extend(more)
    assert index._latest == fresh._latest
    assert index.draft(8) == reference_draft(first[:cut] + more, 8)


def test_copying_a_region_drafts_its_continuation() -> None:
    index = NgramIndex()
    index.extend([1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 3])
    assert index.draft(4) == [4, 5, 6, 7]
    assert index.draft(20) == [4, 5, 6, 7, 8, 9, 2, 3]  # up to the end of what is known


def test_latest_occurrence_wins_and_longer_suffixes_first() -> None:
    index = NgramIndex()
    index.extend([7, 1, 2, 9, 5, 2, 8, 1, 2])
    assert index.draft(1) == [9]  # (1, 2) matched at its only earlier place; not 2 -> 8
    index = NgramIndex(min_n=1)
    index.extend([2, 8, 2, 6, 2])
    assert index.draft(1) == [6]  # the latest earlier 2
    assert NgramIndex().min_n == 2  # by default a single token is too weak a match


def test_no_match_no_draft_and_bad_ids_refused() -> None:
    index = NgramIndex(min_n=2)
    index.extend([1, 2, 3, 4])
    assert index.draft(8) == []
    with pytest.raises(ValueError):
        index.append(-1)
    with pytest.raises(ValueError):
        NgramIndex(max_n=1, min_n=2)


def test_lookup_reports_the_length_of_the_suffix_it_matched() -> None:
    index = NgramIndex()
    index.extend([1, 2, 3, 4, 5, 9, 3, 4])
    assert index.lookup(2) == ([5, 9], 2)  # (3, 4): a 2-token match
    index.extend([5, 9])
    assert index.lookup(2) == ([3, 4], 4)  # (4, 5, 9)... the longest suffix, 4 tokens: 3 4 5 9
    assert NgramIndex().lookup(4) == ([], 0)
