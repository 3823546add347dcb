"""Time as hpsearch records it: UTC, so drivers, the API and readers on any host agree."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def hms(seconds: float) -> str:
    """`0:03:07` for 187 s: elapsed times in progress lines."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"
