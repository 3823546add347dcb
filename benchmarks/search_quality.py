"""Search quality: which sampler + scheduler finds a good configuration with the fewest epochs.

For each task (a space file in search_spaces/) and strategy (sampler + scheduler), over several seeds, a study is
replayed in this process until it has spent a budget of epochs, and the best finished trial's value is recorded
after every trial: the anytime curve (best validation metric against cumulative epochs). Output: one PNG per
task (median and interquartile band per strategy), and a Markdown table of "epochs to reach X" (X = random +
FIFO's median best at the full budget) and "best at budget B", printed and written to --out/<task>.md.

What is the product's own code here, and what is not:
- the sampler is built and driven by `service._searcher.StudySearcher` (Optuna ask/tell exactly as a study
  does; its Optuna study kept in memory instead of SQLite);
- the scheduler is `service._tuner.scheduler_for` — hpsearch's ASHA (`service._asha.Asha`, Ray Tune's rule,
  tested decision for decision against Tune's AsyncHyperBandScheduler) or Tune's FIFOScheduler, called with
  each result as Tune calls it;
- the trial is the built-in trainable's own loop (`trainables.synthetic.run`, `trainables.fit`), stopped by
  raising from its report callback when the scheduler says STOP;
- not Tune's trial runner or Ray: trials run one after another (concurrency 1, which is also what makes a
  seeded study reproducible), or with --concurrency N as N in flight whose epochs all take the same time and
  report in turn (still in one process, one trial computing at a time, as reproducible), with no MLflow or
  registry. Wall time is therefore not the product's.

    python benchmarks/search_quality.py                         # synthetic task, 10 seeds, 30 full trainings
    python benchmarks/search_quality.py --tasks digits_small --seeds 10    # real training: about 15 minutes
    python benchmarks/search_quality.py --tasks tabular --seeds 10         # tabular CSV: 48 minutes beside other work
    python benchmarks/search_quality.py --smoke                 # seconds: 2 seeds, small budget (tests/test_benchmarks.py)
    python benchmarks/search_quality.py --tasks tabular --cache ~/.cache/hpsearch-sq --strategies "TPE + ASHA rung check"
        # keeps every curve it replays, and reads the ones a run before kept (random + FIFO's, half of a run)
    python benchmarks/search_quality.py --tasks digits_small --out benchmarks/search_quality/variants \
        --strategies "TPE + ASHA" "TPE + ASHA rf 2" "TPE + ASHA rf 4" "TPE startup 5 + ASHA" \
        "TPE startup 20 + ASHA" "TPE univariate + ASHA"       # the default with one setting changed at a time
    python benchmarks/search_quality.py --tasks synthetic digits_small --concurrency 2 \
        --out benchmarks/search_quality/concurrency \
        --strategies "TPE + ASHA" "TPE no liar + ASHA"        # two trials in flight, constant liar on and off
    python benchmarks/search_quality.py --tasks synthetic digits_small --out benchmarks/search_quality/brackets \
        --strategies "TPE + ASHA" "TPE + ASHA 3 brackets" "TPE + ASHA 4 brackets" "random + ASHA 4 brackets"
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import os
import statistics
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "search_quality"


@dataclass(frozen=True)
class Task:
    name: str
    space_file: str  # under search_spaces/
    budget_trainings: int  # budget in full trainings (x max_epochs epochs)


TASKS = {
    "synthetic": Task("synthetic", "synthetic_curves.yaml", 30),
    "wine": Task("wine", "wine_mlp.yaml", 20),
    "digits_small": Task("digits_small", "digits_small_mlp.yaml", 30),
    "tabular": Task("tabular", "tabular_mlp.yaml", 30),
}

# name -> overrides of the space file (the product's defaults: tpe, asha grace_period 1, reduction_factor 3)
STRATEGIES = {
    "random + FIFO": ["sampler={type: random}", "scheduler={type: fifo}"],
    "random + ASHA": ["sampler={type: random}", "scheduler={type: asha, grace_period: 1, reduction_factor: 3}"],
    "TPE + FIFO": ["sampler={type: tpe}", "scheduler={type: fifo}"],
    "TPE + ASHA": ["sampler={type: tpe}", "scheduler={type: asha, grace_period: 1, reduction_factor: 3}"],
    "CMA-ES + ASHA": ["sampler={type: cmaes}", "scheduler={type: asha, grace_period: 1, reduction_factor: 3}"],
    "TPE + ASHA 25%": ["sampler={type: tpe}", "scheduler={type: asha, grace_period: 25%, reduction_factor: 3}"],
    "random + ASHA 25%": ["sampler={type: random}", "scheduler={type: asha, grace_period: 25%, reduction_factor: 3}"],
}
# The default strategy with one setting changed at a time: the evidence for the defaults' settings.
_ASHA = "scheduler={type: asha, grace_period: 1, reduction_factor: 3}"
VARIANTS = {
    "TPE + ASHA rf 2": ["sampler={type: tpe}", "scheduler={type: asha, grace_period: 1, reduction_factor: 2}"],
    "TPE + ASHA rf 4": ["sampler={type: tpe}", "scheduler={type: asha, grace_period: 1, reduction_factor: 4}"],
    "TPE startup 5 + ASHA": ["sampler={type: tpe, n_startup_trials: 5}", _ASHA],
    "TPE startup 20 + ASHA": ["sampler={type: tpe, n_startup_trials: 20}", _ASHA],
    "TPE univariate + ASHA": ["sampler={type: tpe, multivariate: false}", _ASHA],
    "TPE + ASHA grace 2": ["sampler={type: tpe}", "scheduler={type: asha, grace_period: 2, reduction_factor: 3}"],
    "TPE + ASHA grace 3": ["sampler={type: tpe}", "scheduler={type: asha, grace_period: 3, reduction_factor: 3}"],
    "TPE + ASHA grace 5": ["sampler={type: tpe}", "scheduler={type: asha, grace_period: 5, reduction_factor: 3}"],
    "TPE no liar + ASHA": ["sampler={type: tpe, constant_liar: false}", _ASHA],  # with --concurrency > 1
    "TPE + ASHA 3 brackets": ["sampler={type: tpe}",
                              "scheduler={type: asha, grace_period: 1, reduction_factor: 3, brackets: 3}"],
    "TPE + ASHA 4 brackets": ["sampler={type: tpe}",
                              "scheduler={type: asha, grace_period: 1, reduction_factor: 3, brackets: 4}"],
    "random + ASHA 4 brackets": ["sampler={type: random}",
                                 "scheduler={type: asha, grace_period: 1, reduction_factor: 3, brackets: 4}"],
    "TPE + ASHA rung check": ["sampler={type: tpe}",
                              "scheduler={type: asha, grace_period: 1, reduction_factor: 3, rung_check: true}"],
    "random + ASHA rung check": ["sampler={type: random}",
                                 "scheduler={type: asha, grace_period: 1, reduction_factor: 3, rung_check: true}"],
}
BASELINE = "random + FIFO"


class _Stopped(Exception):
    """Raised from a trainable's report callback when the scheduler stops the trial."""


class _Trial:
    """One trial's training on a thread of its own, run an epoch at a time: `step()` lets it train until its
    next report and returns that report's metrics, or None once the trial has ended by itself (a diverged one).
    Only one thread runs at any moment (each waits for its turn), so a replay is as deterministic as a loop."""

    def __init__(self, index: int, config: dict, space, started_at: int):
        self.trial_id, self.index, self.started_at = self.id_of(index), index, started_at
        self.epochs, self.last, self.diverged = 0, {}, False
        self._go, self._back = threading.Semaphore(0), threading.Semaphore(0)
        self._stop, self._done, self._metrics, self._error = False, False, None, None
        self._thread = threading.Thread(target=self._run, args=(space, config), daemon=True)
        self._thread.start()

    @staticmethod
    def id_of(index: int) -> str:
        return f"t{index:05d}"

    def _run(self, space, config: dict) -> None:
        from trainables import TrialDiverged

        self._go.acquire()
        try:
            if not self._stop:  # stopped before its first step (a replay that failed meanwhile): never trains
                _train(space, config, self._report)
        except _Stopped:
            pass
        except TrialDiverged:  # as in a study: the trial fails, the study goes on
            self.diverged = True
        except BaseException as exc:  # noqa: BLE001 - handed to the replaying thread
            self._error = exc
        self._metrics, self._done = None, True
        self._back.release()

    def _report(self, metrics: dict, *_checkpoint) -> None:
        self._metrics = metrics
        self._back.release()
        self._go.acquire()
        if self._stop:
            raise _Stopped

    def step(self):
        self._go.release()
        self._back.acquire()
        if self._error is not None:
            raise self._error
        return self._metrics

    def stop(self) -> None:
        """End the trial at its last report (a no-op for one that has ended)."""
        if not self._done:
            self._stop = True
            self._go.release()
            self._back.acquire()
        self._thread.join()

    @property
    def next_report_at(self) -> tuple[int, int]:
        """When its next epoch ends, every epoch taking one unit of time; ties go to the older trial."""
        return self.started_at + self.epochs + 1, self.index


def replay(space, budget_epochs: int, concurrency: int = 1) -> tuple[list[tuple[int, float]], float]:
    """One study until `budget_epochs` are spent, `concurrency` trials at a time: [(cumulative epochs, best so
    far)] after every trial's end, and the wall time spent outside the trainable (sampler and scheduler).

    With concurrency > 1 every epoch takes the same time, so the trials in flight report in turn and a new one
    starts as soon as one ends: the sampler suggests while others run (what constant liar is for) and ASHA
    judges a trial against the rungs the others have reached so far. New trials start while epochs are left;
    the ones in flight then run to their end."""
    from ray.tune.schedulers import TrialScheduler

    from service._searcher import StudySearcher
    from service._tuner import scheduler_for

    metric, mode = space.metrics[0], space.modes[0]
    sign = 1.0 if mode == "max" else -1.0
    searcher = StudySearcher(study_name=space.name, storage_url=None, space=space)
    scheduler = scheduler_for(SimpleNamespace(space=space, metric=metric, mode=mode, optuna_storage=None, study_id=None))
    max_epochs = space.budget.max_epochs
    spent, best, curve, overhead, now = 0, -math.inf, [], 0.0, 0
    running: list[_Trial] = []
    started = 0

    def end(trial: _Trial) -> None:
        nonlocal best, overhead
        t0 = time.perf_counter()
        scheduler.on_trial_complete(None, trial, trial.last)
        searcher.on_trial_complete(trial.trial_id, trial.last, error=trial.diverged)
        overhead += time.perf_counter() - t0
        if trial.last.get("training_iteration") == max_epochs and not trial.diverged:
            best = max(best, sign * trial.last[metric])
        curve.append((spent, sign * best if best > -math.inf else math.nan))
        running.remove(trial)

    try:
        while True:
            while len(running) < concurrency and spent < budget_epochs:
                t0 = time.perf_counter()
                config = searcher.suggest(_Trial.id_of(started))
                if not isinstance(config, dict):  # None or Searcher.FINISHED: budget.trials ran out first
                    raise RuntimeError(f"the searcher gave no trial {started} ({config!r}) with "
                                       f"{budget_epochs - spent} epochs left")
                trial = _Trial(started, config, space, now)
                scheduler.on_trial_add(None, trial)
                overhead += time.perf_counter() - t0
                running.append(trial)
                started += 1
            if not running:
                return curve, overhead
            trial = min(running, key=lambda t: t.next_report_at)
            now = trial.next_report_at[0]
            metrics = trial.step()
            if metrics is None:  # it ended by itself: diverged in this epoch, which counts (as in a study)
                if trial.diverged:
                    spent += 1
                    trial.epochs += 1
                end(trial)
                continue
            spent += 1
            trial.epochs += 1
            trial.last = {"training_iteration": metrics["epoch"], metric: metrics[metric]}
            t0 = time.perf_counter()
            action = scheduler.on_trial_result(None, trial, trial.last)
            if action == TrialScheduler.STOP or metrics["epoch"] >= max_epochs:
                overhead += time.perf_counter() - t0
                trial.stop()
                end(trial)
                continue
            searcher.on_trial_result(trial.trial_id, trial.last)
            overhead += time.perf_counter() - t0
    finally:  # a failure above leaves no trial waiting for its turn
        for trial in list(running):
            trial.stop()


def _train(space, config: dict, report) -> None:
    if space.trainable == "synthetic":
        from trainables.synthetic import run

        run(config, report)
    else:
        from trainables import fit

        fit(space.trainable, config, report)


# -- summaries ---------------------------------------------------------------------------------------------
def best_at(curve: list[tuple[int, float]], epochs: float) -> float:
    """The best finished trial's value once `epochs` epochs were spent (NaN before the first finished)."""
    value = math.nan
    for spent, best in curve:
        if spent > epochs:
            break
        value = best
    return value


def epochs_to_reach(curve: list[tuple[int, float]], target: float, mode: str) -> float:
    for spent, best in curve:
        if not math.isnan(best) and (best >= target if mode == "max" else best <= target):
            return spent
    return math.inf


def quartiles(values: list[float]) -> tuple[float, float, float]:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan, math.nan, math.nan
    if len(finite) == 1:
        return finite[0], finite[0], finite[0]
    q = statistics.quantiles(finite, n=4, method="inclusive")
    return q[0], statistics.median(finite), q[2]


def _fmt(value: float, digits: int = 4) -> str:
    if math.isinf(value):
        return "not reached"
    return "–" if math.isnan(value) else f"{value:.{digits}f}" if digits else f"{value:.0f}"


def run_task(task: Task, seeds: int, budget_trainings: int, out: Path, strategies: list[str],
             concurrency: int = 1, cache: Optional[Path] = None) -> str:
    from service.space import load_space

    space_path = ROOT / "search_spaces" / task.space_file
    results: dict[str, list[list[tuple[int, float]]]] = {}
    overheads: dict[str, list[float]] = {}
    space = None
    # Every trial spends at least one epoch (a diverged one too): as many trials as epochs never run out first.
    budget_epochs = budget_trainings * load_space(str(space_path)).budget.max_epochs
    for name in [BASELINE] + [n for n in strategies if n != BASELINE]:  # X is the baseline's: it comes first
        overrides = {**STRATEGIES, **VARIANTS}[name]
        for seed in range(seeds):
            space = load_space(str(space_path), overrides=[*overrides, f"sampler.seed={seed}",
                                                           f"budget.concurrency={concurrency}",
                                                           f"budget.trials={budget_epochs}"])
            key = _curve_key(space, budget_epochs, concurrency) if cache else None
            found = _read_curve(cache, key) if cache else None
            curve, overhead = found or replay(space, budget_epochs, concurrency)
            if cache and found is None:
                _write_curve(cache, key, curve, overhead)
            results.setdefault(name, []).append(curve)
            overheads.setdefault(name, []).append(overhead)
        print(f"  {task.name}: {name} done ({seeds} seeds)", flush=True)
    max_epochs, mode, metric = space.budget.max_epochs, space.modes[0], space.metrics[0]
    target = statistics.median(best_at(c, budget_epochs) for c in results[BASELINE])
    checkpoints = [t for t in (1, 3, 10) if t < budget_trainings] + [budget_trainings]

    lines = [
        f"### {task.name}: `search_spaces/{task.space_file}` ({metric}, {mode}; {max_epochs} epochs per full "
        f"training; budget {budget_trainings} full trainings = {budget_epochs} epochs; {seeds} seeds"
        + (f"; {concurrency} trials at a time)" if concurrency > 1 else ")"),
        "",
        f"X = {BASELINE}'s median best at the full budget = {target:.4f}. Epochs are summed over every trial, "
        "stopped ones included; values are medians over seeds with the interquartile range [q1, q3].",
        "",
        "| strategy | epochs to reach X | reached | "
        + " | ".join(f"best at {t} trainings" for t in checkpoints)
        + " | sampler+scheduler s/run |",
        "|---|---|---|" + "---|" * len(checkpoints) + "---|",
    ]
    for name, curves in results.items():
        reach = [epochs_to_reach(c, target, mode) for c in curves]
        reached = sum(1 for r in reach if not math.isinf(r))
        r_q1, r_med, r_q3 = _reach_quartiles(reach)
        cells = [f"{_fmt(r_med, 0)} [{_fmt(r_q1, 0)}, {_fmt(r_q3, 0)}]", f"{reached}/{len(reach)}"]
        for t in checkpoints:
            q1, med, q3 = quartiles([best_at(c, t * max_epochs) for c in curves])
            cells.append(f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}]")
        cells.append(f"{statistics.median(overheads[name]):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    _plot(task, results, max_epochs, budget_epochs, target, metric, out / f"{task.name}.png")
    return table


# -- the curve cache (--cache) --------------------------------------------------------------------------------
# A replay is deterministic: the same space, overrides (seed included), budget and concurrency, on the same data,
# code, packages and CPU, give the same curve. So a curve is kept under a key of all of these, and a later run with the same
# --cache reads it instead of training again (random + FIFO, which every run needs for X, is half of a run).
_PACKAGES = ("optuna", "cmaes", "torch", "numpy", "scipy", "scikit-learn", "pandas", "ray")


# The product's code a replay runs: the space, the searcher, the scheduler and the trainables with what they import
# (tests/test_benchmarks.py checks that a replay imports nothing else from service/ or trainables/), so that a
# change elsewhere (the runner, the records) keeps the cache. service/_asha.py counts only for a replay that runs
# it, so that a change to ASHA keeps the FIFO curves.
REPLAY_CODE = ("service/__init__.py", "service/space/*.py", "service/_context.py", "service/_errors.py",
               "service/_optuna.py", "service/_outcome.py", "service/_searcher.py", "service/_settings.py",
               "service/_states.py", "service/_tuner.py", "trainables/*.py")
_ASHA_CODE = "service/_asha.py"


@functools.lru_cache(maxsize=2)
def _code_and_packages(asha: bool) -> str:
    """A digest of everything a replay's curve depends on besides its space: the product's code it runs
    (REPLAY_CODE, and _ASHA_CODE for an ASHA replay), this script, and the versions of the packages that sample,
    train or schedule."""
    files = {path for pattern in REPLAY_CODE + ((_ASHA_CODE,) if asha else ()) for path in ROOT.glob(pattern)}
    digest = hashlib.sha256()
    for path in sorted(files | {Path(__file__).resolve()}):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(";".join(f"{name}={_version(name)}" for name in _PACKAGES).encode())
    digest.update(_machine().encode())  # torch's and TPE's floating point differ between CPUs
    return digest.hexdigest()


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def _machine() -> str:
    import platform

    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{platform.machine()} {model or platform.processor()}"


def _data_files(space) -> list[Path]:
    """The files a space's data are read from (a csv, or a folder of image files), for the key."""
    data = space.data
    if data.path:
        return [Path(data.path)]
    if data.root and Path(data.root).is_dir():
        return sorted(p for p in Path(data.root).rglob("*") if p.is_file())
    return []


def _curve_key(space, budget_epochs: int, concurrency: int) -> str:
    code = _code_and_packages(space.scheduler.type != "fifo")
    data = [hashlib.sha256(path.read_bytes()).hexdigest() for path in _data_files(space)]
    parts = json.dumps([space.text, list(space.overrides), budget_epochs, concurrency, code, data])
    return hashlib.sha256(parts.encode()).hexdigest()[:32]


def _read_curve(cache: Path, key: str) -> Optional[tuple[list[tuple[int, float]], float]]:
    try:
        data = json.loads((cache / f"{key}.json").read_text())
        return [(spent, best) for spent, best in data["curve"]], float(data["overhead"])
    except (OSError, ValueError, KeyError, TypeError):  # none kept, or not one this script wrote: replay it
        return None


def _write_curve(cache: Path, key: str, curve: list[tuple[int, float]], overhead: float) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{key}.{os.getpid()}.tmp"  # runs side by side on one cache may keep the same curve at once
    tmp.write_text(json.dumps({"curve": curve, "overhead": overhead}))  # NaN (no trial ended yet) as JSON's NaN
    tmp.replace(cache / f"{key}.json")


def _reach_quartiles(reach: list[float]) -> tuple[float, float, float]:
    """Quartiles where "not reached" counts as infinitely many epochs."""
    ordered = sorted(reach)
    if all(math.isinf(r) for r in ordered):
        return math.inf, math.inf, math.inf

    def at(p: float) -> float:
        position = p * (len(ordered) - 1)
        low, high = math.floor(position), math.ceil(position)
        if math.isinf(ordered[high]):
            return math.inf if position > low or math.isinf(ordered[low]) else ordered[low]
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return at(0.25), at(0.5), at(0.75)


def _plot(task, results, max_epochs, budget, target, metric, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [max_epochs * i / 4 for i in range(1, 4 * (budget // max_epochs) + 1)]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name, curves in results.items():
        rows = [[best_at(c, x) for c in curves] for x in grid]
        q = [quartiles(row) for row in rows]
        xs = [x / max_epochs for x in grid]
        ax.plot(xs, [m for _, m, _ in q], label=name, lw=2 if name in (BASELINE, "TPE + ASHA") else 1.2)
        ax.fill_between(xs, [a for a, _, _ in q], [b for _, _, b in q], alpha=0.12)
    ax.axhline(target, color="grey", ls=":", lw=1)
    ax.axvline(1, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"cumulative epochs, in full trainings ({max_epochs} epochs each)")
    ax.set_ylabel(f"best finished trial's {metric} (median, IQR band)")
    ax.set_title(f"{task.name}: anytime best over seeds (dotted: random + FIFO's final median)")
    finite = [b for cs in results.values() for c in cs for _, b in c if not math.isnan(b)]
    if finite:
        ax.set_ylim(max(min(finite), target - 0.15), max(finite) + 0.005)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["synthetic"], choices=list(TASKS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=None, help="full trainings per study (default: the task's)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for <task>.png and <task>.md")
    parser.add_argument("--smoke", action="store_true", help="2 seeds, budget 3 trainings: seconds")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="trials in flight at once, every epoch taking the same time (default: 1)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=[*STRATEGIES, *VARIANTS],
                        metavar="NAME", help=(f"default: {', '.join(STRATEGIES)}; also: {', '.join(VARIANTS)} "
                                              f"({BASELINE} always runs: it sets X)").replace("%", "%%"))
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="keep every replayed curve in DIR and read the ones found there instead of training "
                             "again (keyed by space, strategy, seed, budget, concurrency, data files, the product "
                             "code a replay runs, this script, the package versions and the CPU); a curve read "
                             "back keeps the s/run it was measured with")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.budget = 2, 3

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if any(TASKS[name].name != "synthetic" for name in args.tasks):
        import torch

        torch.set_num_threads(1)  # as in a Tune trial with cpu: 1 (Ray sets OMP_NUM_THREADS=1)
    warnings.filterwarnings("ignore")
    logging.getLogger("ray").setLevel(logging.ERROR)
    started = time.perf_counter()
    tables = []
    for name in args.tasks:
        task = TASKS[name]
        tables.append(run_task(task, args.seeds, args.budget or task.budget_trainings, args.out, args.strategies,
                               args.concurrency, args.cache))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, table in zip(args.tasks, tables):
        print(table)
        (args.out / f"{name}.md").write_text(table)
    print(f"({time.perf_counter() - started:.0f} s; <task>.png and <task>.md in {args.out})")


if __name__ == "__main__":
    main()
