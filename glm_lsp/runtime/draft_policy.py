"""How many tokens to draft next: the length that maximises the expected tokens per second, from how
drafts like this one have landed and what a pass over that many tokens costs here.

A round feeds the last token and d drafted ones and yields E(d) = 1 + p1 + p1*p2 + ... tokens,
where p_i is the chance the i-th draft token lands once the ones before it have (copies land in
runs, so p_i is kept per position rather than as one rate). It costs T(1 + d), a forward pass over
1 + d tokens. Where a pass is memory-bound (Apple silicon, a dense model) T barely grows with the
tokens fed and long drafts pay; where each fed token costs nearly a pass of its own (MLX on a CPU,
or a MoE whose draft tokens route to other experts) only drafts that are nearly sure to land do.
Both are running estimates, so the choice follows the hardware and the text; the output never
depends on it (speculative.py is exact whatever is drafted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRIOR_ACCEPTED, PRIOR_REJECTED = 3.0, 1.0  # 3 in 4 before anything is known: drafts are copies
# Draft only for a predicted gain of 10% or more: smaller ones are inside the estimates' error,
# and where each fed token costs a pass a wrong guess costs a whole token.
GAIN_MARGIN = 1.1
PROBE_FIRST, PROBE_LAST = 8, 64  # rounds between one-token probes, doubling while they miss


class PassCost:
    """A decode round's wall time by tokens fed: a running average per size. A size not timed
    yet is interpolated between timed ones, or above them extended along the line from one token
    (taken as no dearer than the largest timed size while that is the only one: the first long
    draft is tried once, after which its own time counts). One estimate serves every conversation
    on the model: it is a property of the model on this hardware."""

    def __init__(self, decay: float = 0.9) -> None:
        self.decay = decay
        self.times: dict[int, float] = {}  # tokens fed -> seconds

    def observe(self, fed: int, seconds: float) -> None:
        if fed < 1 or seconds <= 0:
            return
        predicted = self.seconds(fed)
        if predicted is not None:  # one stall (a GC pause, a slow consumer) must not swing it
            seconds = min(seconds, 3 * predicted)
        old = self.times.get(fed)
        self.times[fed] = seconds if old is None else self.decay * old + (1 - self.decay) * seconds

    def seconds(self, fed: int) -> float | None:
        if fed in self.times:
            return self.times[fed]
        below = [n for n in self.times if n < fed]
        above = [n for n in self.times if n > fed]
        if not below:
            return None
        lo = max(below)
        if not above:  # beyond what was timed: the line from one token to the largest timed size
            if lo == 1 or 1 not in self.times:
                return self.times[lo]
            slope = (self.times[lo] - self.times[1]) / (lo - 1)
            return self.times[lo] + max(0.0, slope) * (fed - lo)
        hi = min(above)
        return self.times[lo] + (self.times[hi] - self.times[lo]) * (fed - lo) / (hi - lo)

    def relative(self, fed: int) -> float:
        """T(fed) / T(1); 1.0 (feeding more is free) until a single-token round has been timed."""
        one, total = self.seconds(1), self.seconds(fed)
        return 1.0 if one is None or total is None else total / one


@dataclass
class _Acceptance:
    """For drafts found from one match length: per draft position, landed against missed (both
    decaying, each position only when it was tried), and the probing state."""

    landed: list[float]
    missed: list[float]
    probe_every: int = PROBE_FIRST  # rounds without a draft between probes (drafting does not pay)
    idle: int = 0

    def chance(self, position: int) -> float:
        """The chance the draft token at `position` (0-based) lands, given the earlier ones did."""
        landed, missed = self.landed[position], self.missed[position]
        return landed / (landed + missed)

    def expected_tokens(self, draft: int) -> float:
        """Tokens a round yields: the fed token's draw plus each draft token while all before it
        landed."""
        return self.expected_by_length(draft)[draft]

    def expected_by_length(self, longest: int) -> list[float]:
        """expected_tokens(d) for every d from 0 to `longest`, in one pass."""
        totals, all_landed = [1.0], 1.0
        for position in range(longest):
            all_landed *= self.chance(position)
            totals.append(totals[-1] + all_landed)
        return totals


@dataclass
class DraftPolicy:
    """Chooses each round's draft length (0: feed one token) and learns from how it fared.

    `cost` None leaves the cost out (feeding is taken as free): a distributed model's ranks must
    all choose the same lengths, and wall-clock times differ between ranks."""

    maximum: int
    cost: PassCost | None = None
    decay: float = 0.9
    _by_match: dict[int, _Acceptance] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError("draftTokens must be a positive integer")

    def acceptance(self, match: int) -> _Acceptance:
        if match not in self._by_match:
            self._by_match[match] = _Acceptance(
                [PRIOR_ACCEPTED] * self.maximum, [PRIOR_REJECTED] * self.maximum
            )
        return self._by_match[match]

    def best(self, match: int, available: int) -> int:
        """The draft length with the most expected tokens per second; 0 when no draft pays."""
        expected = self.acceptance(match).expected_by_length(min(available, self.maximum))
        best, best_rate = 0, 0.0  # tokens per T(1)
        for d in range(1, len(expected)):
            relative = self.cost.relative(1 + d) if self.cost else 1.0
            per_time = expected[d] / relative
            if per_time > best_rate:
                best, best_rate = d, per_time
        return best if best_rate >= GAIN_MARGIN else 0

    def choose(self, match: int, available: int) -> int:
        """This round's draft length for a draft of `available` tokens found from a `match`-token
        suffix. When drafting does not pay, probe with one token now and then (the cheapest pass
        that tells whether drafts have started to land: a copy begins), further apart while the
        probes miss."""
        if available <= 0:
            return 0
        best = self.best(match, available)
        stats = self.acceptance(match)
        if best > 0:
            stats.idle = 0
            return best
        stats.idle += 1
        if stats.idle < stats.probe_every:
            return 0
        stats.idle = 0
        return 1

    def update(self, match: int, proposed: int, accepted: int) -> None:
        if proposed <= 0:
            return
        stats, d = self.acceptance(match), self.decay
        if accepted == 0:
            stats.probe_every = min(PROBE_LAST, 2 * stats.probe_every)
        else:
            stats.probe_every = PROBE_FIRST
        for position in range(min(proposed, accepted + 1)):
            stats.landed[position] = d * stats.landed[position] + (position < accepted)
            stats.missed[position] = d * stats.missed[position] + (position == accepted)
