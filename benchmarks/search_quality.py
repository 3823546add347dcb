"""Search quality: which sampler + scheduler finds a good configuration with the fewest epochs.

For each task (a space file in search_spaces/) and strategy (sampler + scheduler), over several seeds, a study is
replayed in this process until it has spent a budget of epochs, and the best finished trial's value is recorded
after every trial: the anytime curve (best validation metric against cumulative epochs). Output: one PNG per
task (median and interquartile band per strategy), and a Markdown table of "epochs to reach X" (X = random +
FIFO's median best at the full budget) and "best at budget B", printed and written to --out/<task>.md.

What is the product's own code here, and what is not:
- the sampler is built and driven by `service._searcher.StudySearcher` (Optuna ask/tell exactly as a study
  does; its Optuna study kept in memory instead of SQLite);
- the scheduler is `service._tuner.scheduler_for` — Ray Tune's AsyncHyperBandScheduler or FIFOScheduler,
  called with each result as Tune calls it;
- the trial is the built-in trainable's own loop (`trainables.synthetic.run`, `trainables.fit`), stopped by
  raising from its report callback when the scheduler says STOP;
- not Tune's trial runner or Ray: trials run one after another (concurrency 1, which is also what makes a
  seeded study reproducible), with no MLflow or registry. Wall time is therefore not the product's.

    python benchmarks/search_quality.py                         # synthetic task, 10 seeds, 30 full trainings
    python benchmarks/search_quality.py --tasks digits_small --seeds 10    # real training: about 15 minutes
    python benchmarks/search_quality.py --smoke                 # seconds: 2 seeds, small budget (tests/test_benchmarks.py)
    python benchmarks/search_quality.py --tasks digits_small --out benchmarks/search_quality/variants \
        --strategies "TPE + ASHA" "TPE + ASHA rf 2" "TPE + ASHA rf 4" "TPE startup 5 + ASHA" \
        "TPE startup 20 + ASHA" "TPE univariate + ASHA"       # the default with one setting changed at a time
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

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
}
BASELINE = "random + FIFO"


class _Stopped(Exception):
    """Raised from a trainable's report callback when the scheduler stops the trial."""


def replay(space, budget_epochs: int) -> tuple[list[tuple[int, float]], float]:
    """One study, trial after trial until `budget_epochs` are spent: [(cumulative epochs, best so far)] after
    every trial, and the wall time spent outside the trainable (sampler and scheduler)."""
    from ray.tune.schedulers import TrialScheduler

    from service._searcher import StudySearcher
    from service._tuner import scheduler_for
    from trainables import TrialDiverged

    metric, mode = space.metrics[0], space.modes[0]
    sign = 1.0 if mode == "max" else -1.0
    searcher = StudySearcher(study_name=space.name, storage_url=None, space=space)
    scheduler = scheduler_for(SimpleNamespace(space=space, metric=metric, mode=mode))
    max_epochs = space.budget.max_epochs
    spent, best, curve, overhead = 0, -math.inf, [], 0.0
    index = 0
    while spent < budget_epochs:
        started = time.perf_counter()
        trial = SimpleNamespace(trial_id=f"t{index:05d}")
        config = searcher.suggest(trial.trial_id)
        if not isinstance(config, dict):  # None or Searcher.FINISHED: budget.trials ran out before the epochs
            raise RuntimeError(f"the searcher gave no trial {index} ({config!r}) with {budget_epochs - spent} epochs left")
        scheduler.on_trial_add(None, trial)
        overhead += time.perf_counter() - started
        last: dict = {}

        def report(metrics: dict, *_checkpoint) -> None:
            nonlocal spent, overhead, last
            spent += 1
            last = {"training_iteration": metrics["epoch"], metric: metrics[metric]}
            t0 = time.perf_counter()
            action = scheduler.on_trial_result(None, trial, last)
            if action == TrialScheduler.STOP or metrics["epoch"] >= max_epochs:
                overhead += time.perf_counter() - t0
                raise _Stopped
            searcher.on_trial_result(trial.trial_id, last)
            overhead += time.perf_counter() - t0

        failed = False
        try:
            _train(space, config, report)
        except _Stopped:
            pass
        except TrialDiverged:  # as in a study: the trial fails, the study goes on; the epoch it diverged in counts
            failed = True
            spent += 1
        started = time.perf_counter()
        scheduler.on_trial_complete(None, trial, last)
        searcher.on_trial_complete(trial.trial_id, last, error=failed)
        overhead += time.perf_counter() - started
        if last.get("training_iteration") == max_epochs and not failed:
            best = max(best, sign * last[metric])
        curve.append((spent, sign * best if best > -math.inf else math.nan))
        index += 1
    return curve, overhead


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


def run_task(task: Task, seeds: int, budget_trainings: int, out: Path, strategies: list[str]) -> str:
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
                                                           "budget.concurrency=1", f"budget.trials={budget_epochs}"])
            curve, overhead = replay(space, budget_epochs)
            results.setdefault(name, []).append(curve)
            overheads.setdefault(name, []).append(overhead)
        print(f"  {task.name}: {name} done ({seeds} seeds)", flush=True)
    max_epochs, mode, metric = space.budget.max_epochs, space.modes[0], space.metrics[0]
    target = statistics.median(best_at(c, budget_epochs) for c in results[BASELINE])
    checkpoints = [t for t in (1, 3, 10) if t < budget_trainings] + [budget_trainings]

    lines = [
        f"### {task.name}: `search_spaces/{task.space_file}` ({metric}, {mode}; {max_epochs} epochs per full "
        f"training; budget {budget_trainings} full trainings = {budget_epochs} epochs; {seeds} seeds)",
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
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=[*STRATEGIES, *VARIANTS],
                        metavar="NAME", help=f"default: {', '.join(STRATEGIES)}; also: {', '.join(VARIANTS)} "
                                            f"({BASELINE} always runs: it sets X)")
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
        tables.append(run_task(task, args.seeds, args.budget or task.budget_trainings, args.out, args.strategies))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, table in zip(args.tasks, tables):
        print(table)
        (args.out / f"{name}.md").write_text(table)
    print(f"({time.perf_counter() - started:.0f} s; <task>.png and <task>.md in {args.out})")


if __name__ == "__main__":
    main()
