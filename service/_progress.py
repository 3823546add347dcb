"""Following a study while it runs: counts by state, best so far, retries, the budgets, the registry row.

`StudyProgress` is both a Tune callback (it sees every trial start, result, retry and end) and a Tune stopper:
it stops a trial whose metric turns non-finite, and ends the study once more trials failed than
`max_failed_trials` allows, once `budget.time` is spent (counted from the first trial's start), or when
`hpsearch stop` asks. The same instance is passed as both, so the two roles share one count, also after Tune
unpickles it on resume.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from ray.tune import Callback
from ray.tune.stopper import Stopper

from service._clock import hms
from service._context import StudyContext
from service._optuna import (
    HELD_ATTR,
    LOST_ATTR,
    OUT_OF_TIME_ATTR,
    RETRIES_ATTR,
    TUNE_TRIAL_ID_ATTR,
    ended_tune_trials,
    note_trial,
    noted_trials,
    optuna_number,
    own_trials,
)
from service._outcome import TrialOutcome, epochs_reached, is_fault, trial_outcome
from service._states import TrialLabel, trial_label
from service._studylog import append_log
from service._trial_runs import failure_reason, gave_up_reason
from trainables import RESERVED_CONFIG_KEYS

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0  # a driver silent for 12 of these is taken for dead (service/_studies.py)


@dataclass
class TrialView:
    number: int  # order of first start, as Optuna numbers trials
    state: TrialLabel = TrialLabel.RUNNING
    epoch: int = 0
    value: Optional[float] = None  # latest value of the primary metric
    reason: str = ""
    params: str = ""
    retries: int = 0  # restarts from its checkpoint after its worker or node was lost
    lost: bool = False  # failed because its workers were lost more often than max_retries: not its own fault


@dataclass
class Snapshot:
    """What the terminal shows, and what the registry row is updated with."""

    trials: dict[str, TrialView] = field(default_factory=dict)
    best_value: Optional[float] = None
    best_trial: Optional[str] = None
    started: float = field(default_factory=time.time)
    time_used_s: float = 0.0  # trial-phase time of earlier runs of the study (budget.time counts it)
    phase_started: Optional[float] = None  # when this run's first trial started

    def count(self, state: TrialLabel) -> int:
        return sum(1 for t in self.trials.values() if t.state == state)

    def finished(self) -> int:
        return sum(t.state in (TrialLabel.COMPLETED, TrialLabel.PRUNED, TrialLabel.FAILED) for t in self.trials.values())


class StudyProgress(Callback, Stopper):
    # Tune trials Optuna held as ended as a restore began (setup). A class default: a study saved by an older
    # hpsearch pickled its progress without it.
    _ended_before: frozenset = frozenset()

    def __init__(self, ctx: StudyContext, *, with_registry: bool = True):
        self.ctx = ctx
        self.with_registry = with_registry  # False: no registry row to update (unit tests of the callback)
        self._study = None
        self.snapshot = Snapshot()
        self.failure_budget_exceeded = False
        self._registry = None
        self._last_registry_write = 0.0
        self._live = None  # rich Live table when stderr is a terminal; plain lines otherwise
        self._last_refresh = 0.0
        self._last_stop_poll = 0.0
        self._last_heartbeat = 0.0
        self.stop_requested = False
        self.out_of_time = False
        self._finished_before = 0  # trials an earlier run finished: not in this run's pace
        self._restored = False  # this run resumed the study from Tune's saved state
        self._reruns: set[str] = set()  # Tune trials run again though Optuna holds them as ended

    @property
    def metric(self) -> str:
        return self.ctx.metric

    @property
    def max_epochs(self) -> int:
        return self.ctx.space.budget.max_epochs

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_registry"] = state["_live"] = state["_study"] = None
        state["stop_requested"], state["_last_stop_poll"] = False, 0.0  # a resumed study listens afresh
        state["out_of_time"] = False
        return state

    # Tune checkpoints callback state with the experiment and hands it back on resume.
    def get_state(self) -> Optional[dict]:
        snapshot = dataclasses.replace(self.snapshot, time_used_s=self.time_used_s(), phase_started=None)
        return {"snapshot": snapshot, "failure_budget_exceeded": self.failure_budget_exceeded}

    def set_state(self, state: dict) -> None:
        self.snapshot = state["snapshot"]
        self.snapshot.started = time.time()
        self.failure_budget_exceeded = state["failure_budget_exceeded"]
        self._finished_before = self.snapshot.finished()
        self._restored = True

    # -- Stopper ---------------------------------------------------------------------------------------
    def __call__(self, trial_id: str, result: dict) -> bool:
        """Stop a trial at once when one of the study's metrics turns NaN or infinite: it failed (the reason
        names the epoch and the metric), whatever it would report later. Stop a rerun of a trial that had
        ended (see on_trial_start) at its first result."""
        if trial_id in self._reruns:
            return True
        if is_fault(result):
            return False
        return any(not _finite(result[name]) for name in self.ctx.space.metrics if name in result)

    def stop_all(self) -> bool:
        if self._time_spent():
            return True
        return self.failure_budget_exceeded or (self.stop_requested and not callable(signal.getsignal(signal.SIGUSR1)))

    def time_used_s(self) -> float:
        """Trial-phase time so far, over every run of the study: what budget.time limits."""
        s = self.snapshot
        return s.time_used_s + (time.time() - s.phase_started if s.phase_started is not None else 0.0)

    def _time_spent(self) -> bool:
        limit = self.ctx.space.budget.time_s
        if not limit or self.time_used_s() < limit:
            return False
        if not self.out_of_time:
            self.out_of_time = True
            self._emit(f"the time budget ({self.ctx.space.budget.time_text}) is spent: ending the study")
            if self._optuna_study() is not None:
                self._optuna_study().set_user_attr(OUT_OF_TIME_ATTR, True)
        return True

    # -- Callback --------------------------------------------------------------------------------------
    def setup(self, **info) -> None:
        """The study starts (or resumes) on this driver."""
        if self._restored:
            self._ended_before = ended_tune_trials(self._optuna_study())
            self._count_trials_ended_since_saved()

    def _count_trials_ended_since_saved(self) -> None:
        """Tune saved this progress with its experiment, which can be older than the Optuna study: a trial that
        ended after the save (one the searcher takes back, or one Tune runs again and stops at its first
        result) is counted as Optuna ended it, not as running or not at all. Only the display and the registry's
        live counts read this, so a failure here is a warning, never a resume that fails."""
        try:
            study = self._optuna_study()
            if study is not None:
                self._count_ended(study)
        except Exception as exc:  # noqa: BLE001 - see above
            logger.warning("the resumed progress could not be matched with the Optuna study: %s: %s",
                           type(exc).__name__, exc)
        self._finished_before = self.snapshot.finished()

    def _count_ended(self, study) -> None:
        lost = noted_trials(study, LOST_ATTR)
        for t in own_trials(study):
            tune_id = t.user_attrs.get(TUNE_TRIAL_ID_ATTR)
            state, values = _ended_as(t)
            view = self.snapshot.trials.get(tune_id)
            if tune_id is None or state is None or (view is not None and view.state != TrialLabel.RUNNING):
                continue  # not one of Tune's, not ended, or counted already
            view = view or self.snapshot.trials.setdefault(tune_id, TrialView(number=t.number))
            view.state, view.lost = trial_label(state), t.number in lost
            view.reason = study.user_attrs.get(f"{LOST_ATTR}.{t.number}", "") if view.lost else view.reason
            view.epoch = max(t.intermediate_values, default=view.epoch)
            if values is not None:
                view.value = values[0]
            elif t.intermediate_values:  # stopped early: its last epoch's value
                view.value = t.intermediate_values[view.epoch]
            if view.state == TrialLabel.COMPLETED and view.value is not None and self._better(view.value):
                self.snapshot.best_value, self.snapshot.best_trial = view.value, tune_id

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        self._poll_stop_request()
        self._heartbeat()

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        if trial.trial_id in self._ended_before:
            # Tune's saved state was older than the trial's end: Tune runs it again. Its end stands.
            self._reruns.add(trial.trial_id)
            self._emit(f"trial {self._view(trial.trial_id).number:04d} had ended before the study was resumed: "
                       f"Tune's saved state runs it again; it is stopped at its first result and keeps its end")
            return
        if self.snapshot.phase_started is None:
            self.snapshot.phase_started = time.time()
        view = self._view(trial.trial_id)
        view.state = TrialLabel.RUNNING
        view.params = _brief(trial.config)
        if view.retries:
            self._emit(f"trial {view.number:04d} restarted from its checkpoint at epoch {view.epoch} (retry {view.retries})")
        else:
            self._emit(f"trial {view.number:04d} started  {view.params}")
        self._write_registry(force=True)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if is_fault(result) or trial.trial_id in self._reruns:
            return
        view = self._view(trial.trial_id)
        view.epoch = int(result.get("training_iteration", view.epoch))
        value = result.get(self.metric)
        if isinstance(value, (int, float)):
            view.value = float(value)
        self._refresh_live()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        if trial.trial_id in self._reruns:
            return
        view = self._view(trial.trial_id)
        outcome = trial_outcome(trial.last_result, False, self.ctx.space.metrics, self.max_epochs)
        view.state, view.reason = outcome.label, outcome.reason
        view.epoch = epochs_reached(trial.last_result) or view.epoch
        if view.state == TrialLabel.COMPLETED and view.value is not None and self._better(view.value):
            self.snapshot.best_value, self.snapshot.best_trial = view.value, trial.trial_id
        detail = f"  {view.reason}" if view.reason else ("" if view.value is None else f"  {self.metric}={view.value:.4f}")
        self._emit(f"trial {view.number:04d} {str(view.state):<9} epoch {view.epoch}/{self.max_epochs}{detail}")
        self._after_end()

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        """Tune gave up on the trial: its worker or node was lost more often than max_retries allows (its own
        errors never reach Tune, see service/_tuner.py). It failed, but not of its own fault. (Tune has told
        the searcher first: Optuna holds the trial as failed already.)"""
        if trial.trial_id in self._reruns or trial.trial_id in self._ended_before:
            return  # after a restore, a trial that had ended: its end stands
        view = self._view(trial.trial_id)
        view.state, view.lost = TrialLabel.FAILED, True
        view.reason = gave_up_reason(trial, view.retries, self.ctx.space.budget.max_retries)
        if self._optuna_study() is not None:
            note_trial(self._optuna_study(), LOST_ATTR, view.number, view.reason)
        self._emit(f"trial {view.number:04d} failed    epoch {view.epoch}/{self.max_epochs}  {view.reason}")
        self._after_end()

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        """A lost worker or node: Tune restarts the trial from its last checkpoint."""
        if trial.trial_id in self._reruns:
            return
        view = self._view(trial.trial_id)
        view.retries += 1
        if self._optuna_study() is not None:
            note_trial(self._optuna_study(), RETRIES_ATTR, view.number, view.retries)
        self._emit(f"trial {view.number:04d} lost its worker at epoch {view.epoch} ({failure_reason(trial)}); "
                   f"retry {view.retries} of {self.ctx.space.budget.max_retries} from its last checkpoint")
        self._write_registry(force=True)

    def on_experiment_end(self, trials: list, **info) -> None:
        self._write_registry(force=True)
        if self._live is not None:
            self._refresh_live(force=True)
            self._live.stop()
            self._live = None

    # -- helpers ---------------------------------------------------------------------------------------
    def _view(self, trial_id: str) -> TrialView:
        view = self.snapshot.trials.get(trial_id)
        if view is None:
            view = self.snapshot.trials[trial_id] = TrialView(number=self._number(trial_id))
        return view

    def _optuna_study(self):
        """The study's Optuna study (None until the searcher made it)."""
        if self._study is None:
            from service._optuna import load_study

            self._study = load_study(self.ctx.optuna_storage, self.ctx.study_id)
        return self._study

    def _number(self, trial_id: str) -> int:
        """The trial's Optuna number; without a study to ask, the order of first start."""
        study = self._optuna_study()
        number = optuna_number(study, trial_id) if study is not None else None
        return len(self.snapshot.trials) if number is None else number

    # -- more helpers ---------------------------------------------------------------------------------------
    def _after_end(self) -> None:
        failed = sum(t.state == TrialLabel.FAILED and not t.lost for t in self.snapshot.trials.values())
        limit = self.ctx.space.budget.max_failed_trials
        if limit is not None and failed > limit:
            if not self.failure_budget_exceeded:
                self._emit(f"{failed} trials failed, more than max_failed_trials={limit}: stopping the study")
            self.failure_budget_exceeded = True
        self._emit(self.status_line())
        self._write_registry(force=True)

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        best = self.snapshot.best_value
        if best is None:
            return True
        return value > best if self.ctx.mode == "max" else value < best

    def status_line(self) -> str:
        """`[0:02:10] running 2 · completed 9 · pruned 4 · failed 0 · of 30 · 6.5 trials/min · ETA 0:02:27 ·
        best val_acc 0.9861 · 412s of time budget left`: the rate counts the trials this run finished."""
        s = self.snapshot
        elapsed = time.time() - s.started
        best = "-" if s.best_value is None else f"{s.best_value:.4f}"
        counts = " · ".join(f"{label} {s.count(label)}" for label in
                            (TrialLabel.RUNNING, TrialLabel.COMPLETED, TrialLabel.PRUNED, TrialLabel.FAILED))
        pace = ""
        finished = s.finished()
        run_s = time.time() - s.phase_started if s.phase_started is not None else 0.0
        finished_here = finished - self._finished_before
        if finished_here > 0 and run_s > 0:
            per_min = finished_here / run_s * 60
            left = self.ctx.space.budget.trials - finished
            eta = left / per_min * 60
            time_s = self.ctx.space.budget.time_s
            if time_s:
                eta = min(eta, max(0.0, time_s - self.time_used_s()))
            pace = f" · {per_min:.1f} trials/min · ETA {hms(eta)}"
        budget = ""
        if self.ctx.space.budget.time_s:
            budget = f" · {max(0.0, self.ctx.space.budget.time_s - self.time_used_s()):.0f}s of time budget left"
        return (f"[{hms(elapsed)}] {counts} · of {self.ctx.space.budget.trials}{pace} · best {self.metric} "
                f"{best}{budget}")

    def _poll_stop_request(self) -> None:
        """`hpsearch stop` (or the API's stop) sets `stop_requested_at` on the registry row; the driver then
        ends the study the way Ctrl-C does: Tune saves its state, running trials end (each keeps its last epoch
        checkpoint) and no new ones start, and the study is marked stopped, ready for `resume`.

        Tune's own interrupt handler does the work: it listens for SIGUSR1 as well as SIGINT, and SIGUSR1 is
        not blocked in Ray job drivers (SIGINT is). Without that handler (Tune running off the main thread),
        raising the signal would end the process, so `stop_all` ends the study instead."""
        if self.stop_requested or not self.with_registry:
            return
        now = time.time()
        if now - self._last_stop_poll < 2.0:
            return
        self._last_stop_poll = now
        record = self._open_registry().find_by_id(self.ctx.study_id)
        if record is None or record.stop_requested_at is None:
            return
        self.stop_requested = True
        self._emit("stop requested: ending the running trials; `hpsearch resume` continues the study")
        if callable(signal.getsignal(signal.SIGUSR1)):
            signal.raise_signal(signal.SIGUSR1)

    def _heartbeat(self) -> None:
        """`heartbeat_at` in the registry every HEARTBEAT_INTERVAL_S: how `hpsearch status` tells a live driver
        on another host from a dead one (on the driver's own host, its pid tells)."""
        if not self.with_registry:
            return
        now = time.time()
        if now - self._last_heartbeat < HEARTBEAT_INTERVAL_S:
            return
        self._last_heartbeat = now
        self._open_registry().touch(self.ctx.study_id)

    def _emit(self, line: str) -> None:
        """One event: a line on a plain stderr, a redraw of the table on a terminal, a line in the log file."""
        append_log(self.ctx.log_path, line)
        if not self.ctx.show_progress:
            return
        if sys.stderr.isatty():
            self._refresh_live(force=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def _refresh_live(self, force: bool = False) -> None:
        if not self.ctx.show_progress or not sys.stderr.isatty():
            return
        now = time.time()
        if not force and now - self._last_refresh < 0.5:
            return
        self._last_refresh = now
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), auto_refresh=False, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()
        self._live.update(self.render_table(), refresh=True)

    def render_table(self):
        """Running trials with their epoch and current metric, then the best finished ones."""
        from rich.table import Table

        table = Table(title=self.ctx.study_id, caption=self.status_line(), caption_justify="left", expand=False)
        for column in ("trial", "state", "epoch", self.metric, "parameters"):
            table.add_column(column, no_wrap=column != "parameters")
        trials = list(self.snapshot.trials.values())
        running = [t for t in trials if t.state == TrialLabel.RUNNING]
        finished = [t for t in trials if t.state == TrialLabel.COMPLETED and t.value is not None]
        finished.sort(key=lambda t: t.value, reverse=self.ctx.mode == "max")
        recent_failed = [t for t in trials if t.state == TrialLabel.FAILED][-3:]
        for t in running + finished[:5] + recent_failed:
            value = "-" if t.value is None else f"{t.value:.4f}"
            detail = t.reason if t.state == TrialLabel.FAILED else t.params
            table.add_row(f"{t.number:04d}", str(t.state), f"{t.epoch}/{self.max_epochs}", value, detail[:80])
        return table

    def _write_registry(self, force: bool = False) -> None:
        if not self.with_registry:
            return
        now = time.time()
        if not force and now - self._last_registry_write < 2.0:
            return
        self._last_registry_write = now
        s = self.snapshot
        self._open_registry().update(
            self.ctx.study_id,
            n_trials=len(s.trials),
            n_running=s.count(TrialLabel.RUNNING),
            n_completed=s.count(TrialLabel.COMPLETED),
            n_pruned=s.count(TrialLabel.PRUNED),
            n_failed=s.count(TrialLabel.FAILED),
            best_value=s.best_value,
            retries=sum(t.retries for t in s.trials.values()),
        )

    def _open_registry(self):
        if self._registry is None:
            from service._registry import open_registry

            self._registry = open_registry(self.ctx.stores.registry_url)
        return self._registry


def announce(ctx: StudyContext) -> None:
    """The study's first line on stderr: its id and how to follow or stop it from another shell (plain lines
    under CI or nohup never show a table title)."""
    if ctx.show_progress:
        print(f"study {ctx.study_id}: follow it with `hpsearch logs {ctx.study_id} --follow`, stop it with "
              f"`hpsearch stop {ctx.study_id}`", file=sys.stderr, flush=True)


def _ended_as(trial) -> tuple[Optional[str], Optional[list]]:
    """How an Optuna trial ended, as (its state's name, its values: a list, or None); in deterministic mode an end
    held back from the sampler counts (held as Optuna is told: one objective's value a plain number). (None,
    None) while it runs."""
    if trial.state.is_finished():
        return trial.state.name, trial.values
    held = trial.user_attrs.get(HELD_ATTR)
    if not held:
        return None, None
    return held["state"], TrialOutcome.as_told(held["state"], held.get("values")).values


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _brief(config: dict) -> str:
    items = [(k, v) for k, v in config.items() if k not in RESERVED_CONFIG_KEYS]
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in items[:6])
