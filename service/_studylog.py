"""A study's event log: one timestamped line per event, appended by whichever driver runs the study.

`hpsearch logs ID` (and the API's logs endpoint) read it from an offset, so following a study is reading
what was appended since the last look. On a cluster the file lies on the storage every node shares.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Optional


def append_log(path: str, line: str) -> None:
    """One line at the end of the log (UTC time, so drivers on any host agree)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{stamp} {line}\n")


def read_log(path: str, offset: int = 0) -> Optional[tuple[str, int]]:
    """The log's text from byte `offset` on, and the offset after it; None when there is no log (yet).

    Only whole lines are returned, so a reader never sees half of a line being written."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, offset))
            data = fh.read()
    except FileNotFoundError:
        return None
    cut = data.rfind(b"\n") + 1
    return data[:cut].decode("utf-8", errors="replace"), max(0, offset) + cut
