"""The study report, drawn off Tune's event loop and off the command's critical path.

Drawing a study's plots (service/_report.py) takes a few seconds of CPU, and importing plotly, matplotlib and
scikit-learn (fANOVA) as much again the first time in a process. Two places draw it:

- While trials run, `ReportDrawer` redraws the report on a thread of its own when asked (a trial ended), at
  most every `interval_s`, and only if a trial ended since its last drawing: Tune's loop only sets a flag.
  It imports the plotting libraries at its first drawing, so a study shorter than one interval never pays
  for them in the driver, whose CPU is the trials' on a small machine. Python threads share one interpreter
  lock, so a redraw still slows Tune's loop down; it no longer stops it.
- The last report, with every trial, is drawn by a child process (`draw_last_report`) once the study's
  records are closed: `hpsearch submit` prints its summary and returns its exit code without waiting for it
  (the report lands on the study's MLflow run a few seconds later), and a driver the API launched waits for it,
  at most HPSEARCH_LAST_REPORT_TIMEOUT_S. The run's tag `hpsearch.last_report` says where it is ("drawing
  <token>", "drawn", "not drawn: why"); a report not drawn is also a line in the study's log. `close_all`,
  called first, stops every drawer of this process and waits for a redraw under way (one that has not
  uploaded yet then does not), so that an older report never lands after the last one.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Callable, Optional

logger = logging.getLogger(__name__)

_OPEN: "weakref.WeakSet[ReportDrawer]" = weakref.WeakSet()  # drawers started and not yet closed


class ReportDrawer:
    """One background thread per study run: draws when asked, at most every `interval_s`."""

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
    def closed(self) -> bool:
        """No more redraws wanted: one under way that has not uploaded yet leaves it to the last report."""
        return self._closed.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
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


def last_report_timeout_s() -> float:
    """How long a driver that waits for its last report (a cluster's) gives the child before ending it."""
    try:
        return float(os.environ.get("HPSEARCH_LAST_REPORT_TIMEOUT_S", "600"))
    except ValueError:
        return 600.0


def draw_last_report(ctx, *, wait: bool) -> None:
    """The study's last report, drawn and uploaded by a child process, once every drawer of this process is
    closed. `wait`: return when it is on the study's run (or after last_report_timeout_s(), the child ended and
    the run and the study log saying so); otherwise return at once (the child has its own session, so a Ctrl-C in the
    terminal the command ran in does not cut it off).

    The study's run carries the child's token (TAG_LAST_REPORT, "drawing <token>") until it is done ("drawn",
    or "not drawn: why"). A child uploads only while the run is there and still names its token: a later run of
    the same study (a resume) that asks for its own last report, or the study's deletion, calls an older child's
    upload off. The stores' URLs reach the child on its stdin, not on its command line, where every user of
    the machine could read them."""
    from service._tracking import TAG_LAST_REPORT, client_for

    close_all()
    token = uuid.uuid4().hex
    job = {"tracking_uri": ctx.stores.tracking_uri, "run_id": ctx.parent_run_id, "optuna_storage": ctx.optuna_storage,
           "study_name": ctx.study_id, "metrics": list(ctx.space.metrics), "log_path": ctx.log_path, "token": token}
    try:
        client = client_for(ctx.stores.tracking_uri)
        client.set_tag(ctx.parent_run_id, TAG_LAST_REPORT, f"drawing {token}")
        # `-m` from this folder: the child imports this copy of hpsearch, whether installed or a checkout.
        child = subprocess.Popen([sys.executable, "-m", "service._report_drawer"], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 cwd=str(Path(__file__).resolve().parent.parent), start_new_session=not wait)
        child.stdin.write(json.dumps(job).encode())
        child.stdin.close()
    except Exception as exc:  # noqa: BLE001 - MLflow unreachable, no process to be had: the results stand
        _log_failure(ctx.log_path, ctx.study_id, f"{type(exc).__name__}: {exc}")
        return
    if not wait:
        return
    timeout_s = last_report_timeout_s()
    try:
        code = child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        why = f"it took longer than {timeout_s:.0f} s (HPSEARCH_LAST_REPORT_TIMEOUT_S) and was ended"
    else:
        if code == 0:
            return
        why = f"its process ended with exit code {code}"  # before it could say why (it says what it meets)
    _log_failure(ctx.log_path, ctx.study_id, why)
    _say(client, {"run_id": ctx.parent_run_id, "token": token}, f"not drawn: {why}")


def _draw_job(job: dict) -> None:
    """In the child: load the study, draw its report, upload it while it is still the one wanted, and say how
    it went on the study's run; what goes wrong is also a line in the study log."""
    client = None
    try:
        from service._optuna import load_study
        from service._tracking import REPORT_NOT_WANTED, client_for, log_study_report

        client = client_for(job["tracking_uri"])
        study = load_study(job["optuna_storage"], job["study_name"])
        if study is None:  # the study ended before its first trial was asked for
            outcome = "not drawn: the study has no trials"
        else:
            why = log_study_report(client, job["run_id"], study, job["metrics"],
                                   still_wanted=lambda: _still_wanted(client, job))
            if why == REPORT_NOT_WANTED:  # a later run of the study, or its deletion, called it off: its say
                return
            outcome = "drawn" if why is None else f"not drawn: {why}"
    except BaseException as exc:  # noqa: BLE001 - the study's records are closed already; only the report is lost
        outcome = f"not drawn: {type(exc).__name__}: {exc}"
    if outcome != "drawn":
        _log_failure(job["log_path"], job["study_name"], outcome.removeprefix("not drawn: "))
    if client is not None:
        _say(client, job, outcome)


def _still_wanted(client, job: dict) -> bool:
    """The study's run is there and still waits for this child's report. Any other error reading it (MLflow
    unreachable after its retries) is raised: the child then says so."""
    from mlflow.exceptions import MlflowException

    from service._tracking import TAG_LAST_REPORT

    try:
        run = client.get_run(job["run_id"])
    except MlflowException as exc:
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":  # deleted with its study
            return False
        raise
    return run.info.lifecycle_stage == "active" and run.data.tags.get(TAG_LAST_REPORT) == f"drawing {job['token']}"


def _say(client, job: dict, outcome: str) -> None:
    """`outcome` in the run's TAG_LAST_REPORT while the run still waits for this child; best effort (the study
    log has the failure already)."""
    from service._tracking import TAG_LAST_REPORT

    try:
        if _still_wanted(client, job):
            client.set_tag(job["run_id"], TAG_LAST_REPORT, outcome[:5000])
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not note the last report's outcome on run %s: %s", job["run_id"], exc)


def _log_failure(log_path: str, study_id: str, reason: str) -> None:
    """Why the last report was not drawn (its first line), in the study's log, unless the log is gone (the
    study was deleted meanwhile: not made again)."""
    from service._studylog import append_log

    first_line = reason.strip().splitlines()[0] if reason.strip() else ""
    try:
        if os.path.exists(log_path):
            append_log(log_path, f"study {study_id}: its last report was not drawn: {first_line}")
    except OSError as exc:  # a full disk: the report's fate is not worth failing a closed study for
        logger.warning("could not write to %s: %s", log_path, exc)


if __name__ == "__main__":
    _draw_job(json.loads(sys.stdin.read()))
