"""How far speculation drafts (runtime/draft_policy.py): as far as it pays, by acceptance and by
what a fed token costs on the hardware."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glm_lsp.runtime.draft_policy import DraftPolicy, PassCost


def cost_of(fixed: float, per_token: float, sizes: range = range(1, 10)) -> PassCost:
    cost = PassCost()
    for _ in range(5):
        for fed in sizes:
            cost.observe(fed, fixed + per_token * fed)
    return cost


@settings(max_examples=50, deadline=None)
@given(st.floats(0.001, 0.2), st.floats(0.0, 0.2))
def test_the_cost_line_is_recovered_from_its_observations(fixed: float, per: float) -> None:
    cost = cost_of(fixed, per)
    assert cost.seconds(9) == pytest.approx(fixed + 9 * per, rel=1e-6)
    assert cost.relative(9) == pytest.approx((fixed + 9 * per) / (fixed + per), rel=1e-6)


def test_cost_is_taken_as_free_until_a_single_token_round_is_timed() -> None:
    cost = PassCost()
    assert cost.relative(9) == 1.0
    for _ in range(10):
        cost.observe(9, 0.5)  # always full drafts: no single-token pass to compare with
    assert cost.relative(9) == 1.0
    assert cost.seconds(1) is None


def test_untimed_sizes_are_interpolated_and_optimistic_above() -> None:
    cost = PassCost()
    cost.observe(1, 0.01)
    assert cost.relative(9) == 1.0  # nothing longer timed yet: worth one try
    cost.observe(3, 0.02)
    assert cost.seconds(2) == pytest.approx(0.015)
    assert cost.relative(9) == pytest.approx(5)  # along the line through 1 and 3 tokens
    cost.observe(9, 0.09)
    assert cost.relative(9) == pytest.approx(9)
    for _ in range(1000):  # a long run of single steps does not make drafting look free again
        cost.observe(1, 0.01)
    assert cost.relative(9) == pytest.approx(9)


def test_one_stall_does_not_swing_the_estimate() -> None:
    cost = cost_of(0.01, 0.01)
    before = cost.relative(9)
    cost.observe(1, 5.0)  # a 5 s pause on a single-token pass
    assert cost.relative(9) == pytest.approx(before, rel=0.5)


def test_expected_tokens_follow_each_positions_chance() -> None:
    policy = DraftPolicy(4)
    assert policy.acceptance(2).expected_tokens(2) == pytest.approx(1 + 0.75 + 0.75**2)  # prior
    learn(policy, 3, 50, 4, 2)  # two land, the third misses, every time
    stats = policy.acceptance(3)
    assert stats.expected_tokens(2) == pytest.approx(3, abs=0.05)
    assert stats.expected_tokens(4) == pytest.approx(3, abs=0.05)  # the third never lands
    assert stats.chance(3) == 0.75  # never tried: still the prior


def learn(policy: DraftPolicy, match: int, rounds: int, proposed: int, accepted: int) -> None:
    for _ in range(rounds):
        policy.update(match, proposed, accepted)


def test_where_feeding_is_nearly_free_long_drafts_pay() -> None:
    policy = DraftPolicy(8, cost=cost_of(0.05, 0.001))  # memory-bound: 9 tokens ~ 1.2x one
    assert policy.choose(4, 8) >= 6  # the prior: 3 in 4 land
    learn(policy, 2, 30, 4, 1)  # a 2-token match: a quarter of the guesses land...
    assert 0 < policy.choose(2, 8) < 8  # ...short drafts still pay
    learn(policy, 4, 30, 8, 8)
    assert policy.choose(4, 8) == 8
    assert policy.choose(4, 3) == 3  # never more than the index has


def test_where_each_fed_token_costs_a_pass_only_sure_drafts_are_made() -> None:
    policy = DraftPolicy(8, cost=cost_of(0.0, 0.03))  # linear: 9 tokens cost 9 passes
    learn(policy, 2, 30, 4, 1)
    assert policy.best(2, 8) == 0
    policy = DraftPolicy(8, cost=cost_of(0.006, 0.024))  # MLX on this CPU, 512-wide model
    learn(policy, 4, 30, 8, 8)  # a copy: everything lands
    assert policy.best(4, 8) == 8
    learn(policy, 3, 30, 8, 3)  # three land, then a miss: exactly three pay
    assert policy.best(3, 8) == 3
    learn(policy, 2, 30, 8, 0)
    assert policy.best(2, 8) == 0


def test_when_drafting_does_not_pay_it_probes_ever_more_rarely() -> None:
    policy = DraftPolicy(8, cost=cost_of(0.0, 0.03))
    learn(policy, 2, 30, 4, 0)
    probes = []
    for i in range(300):
        if d := policy.choose(2, 8):
            assert d == 1  # one-token probes, the cheapest
            probes.append(i)
            policy.update(2, 1, 0)  # ...and they miss
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps == sorted(gaps) and gaps[-1] == 64  # doubling up to every 64th round
    assert policy.choose(2, 0) == 0  # nothing to draft: no probe either


def test_a_probe_that_lands_resumes_drafting() -> None:
    policy = DraftPolicy(8, cost=cost_of(0.006, 0.024))
    learn(policy, 4, 30, 8, 0)
    assert policy.best(4, 8) == 0
    learn(policy, 4, 30, 4, 4)  # the copy starts: the probes land whole
    assert policy.choose(4, 8) > 0


def test_without_a_cost_the_choice_is_deterministic_for_every_rank() -> None:
    a, b = DraftPolicy(8), DraftPolicy(8)
    for proposed, accepted in [(8, 3), (4, 4), (8, 0), (2, 1)]:
        a.update(3, proposed, accepted)
        b.update(3, proposed, accepted)
        assert a.choose(3, 8) == b.choose(3, 8)
    with pytest.raises(ValueError):
        DraftPolicy(0)
