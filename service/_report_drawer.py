"""The study report, drawn off Tune's event loop.

Drawing a study's plots (service/_report.py) takes a second or two, most of it importing plotly and
matplotlib the first time. `ReportDrawer` does that work on a thread of its own:

- it imports the plotting libraries from the first trial result on (the trials are up by then, so the imports
  do not delay them), and the last report, drawn by the runner after the last trial, no longer pays for them
  between the last result and the exit code;
- while trials run it redraws the report when asked (a trial ended), at most every `interval_s`, and only if
  a trial ended since its last drawing: Tune's loop only sets a flag.

Python threads share one interpreter lock, so a redraw still slows Tune's loop down; it no longer stops it.
The last report is the runner's: `close_all` (called before it is drawn) stops every drawer of this process
and waits for a redraw under way, upload included, so that an older report never lands after the last one.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Callable, Optional

from service._imports import import_ahead

logger = logging.getLogger(__name__)

_OPEN: "weakref.WeakSet[ReportDrawer]" = weakref.WeakSet()  # drawers started and not yet closed


class ReportDrawer:
    """One background thread per study run: imports the plotting libraries, then draws when asked."""

    def __init__(self, draw: Callable[[], None], *, interval_s: float):
        self._draw = draw  # draws the report and uploads it
        self.interval_s = interval_s
        self._wanted = threading.Event()
        self._closed = threading.Event()
        self._drawing = threading.Lock()  # held for a whole redraw, upload included
        self._thread: Optional[threading.Thread] = None
        self._last = time.monotonic()  # the first redraw comes one interval after the start

    def start(self) -> None:
        if self._thread is None and not self._closed.is_set():
            self._thread = threading.Thread(target=self._run, name="hpsearch-report", daemon=True)
            _OPEN.add(self)
            self._thread.start()

    def request(self) -> None:
        """A trial ended: redraw when the interval since the last drawing has passed (never on this thread)."""
        self._wanted.set()

    def close(self, timeout_s: float = 60.0) -> None:
        """No more redraws from now on; waits up to `timeout_s` for one under way."""
        self._closed.set()
        self._wanted.set()
        _OPEN.discard(self)
        if self._drawing.acquire(timeout=timeout_s):
            self._drawing.release()
        else:
            logger.warning("a redraw of the study report was still under way after %.0f s; the last report may "
                           "be replaced by it", timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            from service._report import PLOTTING_MODULES
        except Exception:  # noqa: BLE001 - the drawing reports it, as import_ahead leaves it to do
            PLOTTING_MODULES = ()
        import_ahead(PLOTTING_MODULES)
        while not self._closed.is_set():
            self._wanted.wait()
            wait_s = self.interval_s - (time.monotonic() - self._last)
            if wait_s > 0 and self._closed.wait(wait_s):
                return
            with self._drawing:
                if self._closed.is_set():
                    return
                self._wanted.clear()
                self._last = time.monotonic()
                try:
                    self._draw()
                except Exception as exc:  # noqa: BLE001 - a report never fails a study
                    logger.warning("could not redraw the study report: %s", exc)


def close_all(timeout_s: float = 60.0) -> None:
    """Stop every drawer of this process (the runner draws the last report next), whether or not Tune got to
    close them (an interrupted `fit` does not)."""
    for drawer in list(_OPEN):
        drawer.close(timeout_s)
