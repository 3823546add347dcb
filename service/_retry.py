"""One way to retry: a call that may fail for a moment (a store that is restarting, two processes creating the
same schema at once) is tried again with a growing pause, a bounded number of times."""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def retry(
    call: Callable[[], T],
    *,
    on: tuple[type[BaseException], ...],
    attempts: int = 5,
    first_pause_s: float = 0.5,
    what: str = "the call",
    when: Callable[[BaseException], bool] = lambda exc: True,
) -> T:
    """`call()`, again after 0.5 s, 1 s, 2 s, ... while it raises one of `on` for which `when` holds; the last
    failure propagates."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except on as exc:
            if attempt == attempts or not when(exc):
                raise
            pause = first_pause_s * 2 ** (attempt - 1)
            logger.info("%s failed (%s); trying again in %.1f s", what, str(exc).splitlines()[0][:200], pause)
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
