"""Where ASHA judges trials, and its cutoff: the rule of Ray Tune's `AsyncHyperBandScheduler`, stated without Ray
so that `hpsearch validate` can show the rungs (service/_asha.py applies it with several brackets and in
deterministic mode; tests/test_asha.py checks it decides as Tune's does).

Bracket b (0-based) of a scheduler with several starts judging at grace * rf**b epochs: its rungs are bracket 0's
without the first b, as in Tune's brackets. The bracket whose first rung is at or past max_epochs judges nowhere:
its trials all run to max_epochs (Hyperband's hedge against curves that cross).
"""

from __future__ import annotations

import math
from typing import Optional


def asha_rungs(max_epochs: int, grace_period: int, reduction_factor: float) -> list[float]:
    """The milestones (epochs, ascending; fractional for a fractional reduction factor), as Tune computes them."""
    import numpy as np

    n = int(np.log(max_epochs / grace_period) / np.log(reduction_factor) + 1)
    return [grace_period * reduction_factor ** k for k in range(n)]


def bracket_rungs(max_epochs: int, grace_period: int, reduction_factor: float, bracket: int) -> list[float]:
    """Bracket `bracket`'s milestones: bracket 0's without its first `bracket` (Tune's `_Bracket` with s = bracket)."""
    return asha_rungs(max_epochs, grace_period, reduction_factor)[bracket:]


def judged_epochs(max_epochs: int, grace_period: int, reduction_factor: float, bracket: int = 0) -> list[int]:
    """The epochs at which a bracket's trials are judged (a rung's milestone rounded up), below max_epochs (where
    every trial ends anyway)."""
    return [e for e in (math.ceil(m) for m in bracket_rungs(max_epochs, grace_period, reduction_factor, bracket))
            if e < max_epochs]


def max_brackets(max_epochs: int, grace_period: int, reduction_factor: float) -> int:
    """How many brackets differ: one per epoch bracket 0 judges at, plus the one that judges nowhere."""
    return len(judged_epochs(max_epochs, grace_period, reduction_factor)) + 1


def rung_cutoff(values: list[float], reduction_factor: float) -> Optional[float]:
    """The value below which a trial stops at a rung where `values` (higher is better) were recorded."""
    import numpy as np

    return None if not values else float(np.nanpercentile(values, (1 - 1 / reduction_factor) * 100))


# A rung check (`scheduler.rung_check`) lets some trials train in full, never judged, and checks the rungs
# against them: every RUNG_CHECK_EVERY-th of the first RUNG_CHECK_FIRST * RUNG_CHECK_EVERY trials (the 1st, 4th
# and 7th), then the ones 4 * (2**i - 1) positions after the last of those (i = 1, 2, ...: gaps of 4, 8, 16, ...
# trials, so a long study spends ever less on them). Measured against the first three in a row, interleaving
# them lets ASHA find good trials meanwhile (benchmarks/README.md, *Rung check*).
RUNG_CHECK_FIRST = 3
RUNG_CHECK_EVERY = 3
_RUNG_CHECK_GAP = 4


def trains_in_full(k: int) -> bool:
    """Whether the trial at 0-based position k is one a rung check lets train in full."""
    if k < RUNG_CHECK_FIRST * RUNG_CHECK_EVERY:
        return k % RUNG_CHECK_EVERY == 0
    gap, rest = divmod(k - (RUNG_CHECK_FIRST - 1) * RUNG_CHECK_EVERY, _RUNG_CHECK_GAP)
    return rest == 0 and (gap + 1) & gap == 0  # gap + 1 a power of two


def first_trained_in_full(count: int) -> list[int]:
    """The 0-based positions of the first `count` trials a rung check lets train in full."""
    positions, k = [], 0
    while len(positions) < count:
        if trains_in_full(k):
            positions.append(k)
        k += 1
    return positions


def last_checked_against(k: int, window: Optional[int]) -> int:
    """The last 0-based position whose trial the rung check of trial k may read: the trials created before k, or,
    with `window` trials at a time in deterministic mode, the ones that ended before k started."""
    return k - (window or 1)


def first_checked(window: Optional[int]) -> int:
    """The 0-based position of the first trial a rung check can apply to: the first that may read as many trials
    trained in full as a check needs (RUNG_CHECK_FIRST)."""
    return first_trained_in_full(RUNG_CHECK_FIRST)[-1] + (window or 1)
