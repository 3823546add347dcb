"""What `sampler.deterministic: true` costs: wall time of the same study with and without it, at concurrency 2.

Each run is `hpsearch submit search_spaces/synthetic_curves.yaml` on its own embedded Ray (a fresh
HPSEARCH_HOME and MLflow store), with trials that sleep `epoch_seconds` x width/1024 per epoch, so trials take
different times and finish out of order (as real ones do); the modes alternate, so drift on a shared machine hits
both. Wall time includes Ray's start-up (the same for both). Also printed: whether the two deterministic runs
found the same best trial (they must), and the runs' best values.

    python benchmarks/deterministic_cost.py --runs 2
    python benchmarks/deterministic_cost.py --runs 1 --trials 8    # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def submit(deterministic: bool, args) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(prefix="hps-detcost-") as home:
        env = {**os.environ, "HPSEARCH_HOME": home, "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
               "PYTHONPATH": str(ROOT)}
        overrides = [f"budget.trials={args.trials}", f"budget.max_epochs={args.epochs}", "budget.concurrency=2",
                     f"fixed.epoch_seconds={args.epoch_seconds}", "sampler.seed=0",
                     f"sampler.deterministic={'true' if deterministic else 'false'}"]
        command = [sys.executable, "-m", "service.cli", "submit", str(ROOT / "search_spaces" / "synthetic_curves.yaml"),
                   "--json", "--quiet", *[a for o in overrides for a in ("--set", o)]]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=home)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"submit failed ({done.returncode}): {done.stderr[-2000:]}")
        return wall, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per mode")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--epoch-seconds", type=float, default=0.5, help="sleep per epoch at width 1024")
    args = parser.parse_args()
    walls: dict[bool, list[float]] = {False: [], True: []}
    bests: dict[bool, list] = {False: [], True: []}
    for _ in range(args.runs):
        for deterministic in (False, True):
            wall, summary = submit(deterministic, args)
            walls[deterministic].append(wall)
            bests[deterministic].append((summary["best_trial"], round(summary["best_value"], 4)))
            print(f"deterministic={deterministic}: {wall:.1f} s, {summary['n_trials']} trials "
                  f"({summary['n_pruned']} pruned), best trial {summary['best_trial']} = {summary['best_value']:.4f}",
                  flush=True)
    for deterministic in (False, True):
        w = walls[deterministic]
        spread = f" ± {statistics.stdev(w):.1f}" if len(w) > 1 else ""
        print(f"deterministic={deterministic}: wall {statistics.mean(w):.1f}{spread} s (n={len(w)}); bests {bests[deterministic]}")
    if len(bests[True]) > 1:
        print("deterministic runs agree:", len(set(bests[True])) == 1)


if __name__ == "__main__":
    main()
