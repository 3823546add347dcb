"""Where ASHA judges trials, and its cutoff: the rule of Ray Tune's `AsyncHyperBandScheduler` (one bracket),
stated without Ray so that `hpsearch validate` can show the rungs (service/_asha.py applies it in deterministic
mode; tests/test_asha.py checks it decides as Tune's does).
"""

from __future__ import annotations

import math
from typing import Optional


def asha_rungs(max_epochs: int, grace_period: int, reduction_factor: float) -> list[float]:
    """The milestones (epochs, ascending; fractional for a fractional reduction factor), as Tune computes them."""
    import numpy as np

    n = int(np.log(max_epochs / grace_period) / np.log(reduction_factor) + 1)
    return [grace_period * reduction_factor ** k for k in range(n)]


def judged_epochs(max_epochs: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The epochs at which trials are judged (a rung's milestone rounded up), below max_epochs (where every
    trial ends anyway)."""
    return [e for e in (math.ceil(m) for m in asha_rungs(max_epochs, grace_period, reduction_factor)) if e < max_epochs]


def rung_cutoff(values: list[float], reduction_factor: float) -> Optional[float]:
    """The value below which a trial stops at a rung where `values` (higher is better) were recorded."""
    import numpy as np

    return None if not values else float(np.nanpercentile(values, (1 - 1 / reduction_factor) * 100))
