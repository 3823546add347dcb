"""Durations as people write them: 90s, 30m, 2h, 1h30m, 1.5h; a plain number is seconds."""

from __future__ import annotations

import math
import re
from typing import Any

from ._errors import SpaceError, show

_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_PART = re.compile(rf"({_NUMBER})\s*([dhms])")
# The positive durations `parse_duration` reads, as one pattern for the JSON Schema: plain seconds as float()
# reads them, or units largest first, each at most once; some digit must be non-zero.
DURATION_PATTERN = (
    rf"^\s*(?=[^1-9]*[1-9])(?:\+?(?:{_NUMBER})(?:[eE][+-]?\d+)?|"
    + "".join(rf"(?:(?:{_NUMBER})\s*[{unit}{unit.upper()}] *)?" for unit in _UNIT_SECONDS)
    + r")\s*$"
)
_HINT = "write a duration such as 90s, 30m, 2h or 1h30m (a plain number means seconds)"


def parse_duration(text: Any, *, field: str = "budget.time") -> float:
    """Seconds in `text`; SpaceError naming `field` when it is not a duration.

    Units must come largest first and at most once each ("1h30m", not "30m1h"), so a typo such as
    "1m30h" is an error instead of a surprise.
    """
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise SpaceError(f"{show(text)} is not a duration", field=field, value=text, hint=_HINT)
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        seconds = _parse_text(text.strip(), text, field)
    if not math.isfinite(seconds) or seconds < 0:
        raise SpaceError(f"{show(text)} is not a duration", field=field, value=text, hint=_HINT)
    return seconds


def _parse_text(stripped: str, original: str, field: str) -> float:
    try:
        return float(stripped)  # plain seconds, also "1e3"
    except ValueError:
        pass
    position, total, last_rank = 0, 0.0, -1
    ranks = list(_UNIT_SECONDS)
    compact = stripped.lower()
    while position < len(compact):
        match = _PART.match(compact, position)
        if match is None:
            raise SpaceError(f"{original!r} is not a duration", field=field, value=original, hint=_HINT)
        rank = ranks.index(match.group(2))
        if rank <= last_rank:
            raise SpaceError(
                f"{original!r} is not a duration (units out of order or repeated)",
                field=field,
                value=original,
                hint=_HINT,
            )
        last_rank = rank
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
        while position < len(compact) and compact[position] == " ":
            position += 1
    if last_rank < 0:
        raise SpaceError(f"{original!r} is not a duration", field=field, value=original, hint=_HINT)
    return total
