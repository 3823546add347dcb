"""Wall time, best score and peak memory of the default main job (search_spaces/digits_cnn.yaml).

    python benchmarks/example_study.py [--runs 3] [--set budget.trials=30 ...]

Each run is a fresh `hpsearch submit ... --json` process (embedded Ray start-up included) with its own
state directory and MLflow store in a temporary folder. Peak RSS is the driver's and its children's
(the Ray worker processes), from getrusage(RUSAGE_CHILDREN): the largest single process, not the sum.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, HPSEARCH_HOME=f"{tmp}/home", MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "service.cli", "submit", str(REPO / "search_spaces/digits_cnn.yaml"), "--json", "--quiet", *extra],
            env=env, capture_output=True, text=True, check=True,
        ).stdout
        wall = time.perf_counter() - started
    summary = json.loads(out)
    return {"wall_s": wall, "best": summary["best_value"], "completed": summary["n_completed"], "pruned": summary["n_pruned"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    extra = [arg for kv in args.overrides for arg in ("--set", kv)]
    rows = [run_once(extra) for _ in range(args.runs)]
    for i, row in enumerate(rows):
        print(f"run {i}: {row['wall_s']:.1f} s, best val_acc {row['best']:.4f}, completed {row['completed']}, pruned {row['pruned']}")
    walls = [r["wall_s"] for r in rows]
    bests = [r["best"] for r in rows]
    spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    print(f"wall time {statistics.mean(walls):.1f} ± {spread(walls):.1f} s; best val_acc {statistics.mean(bests):.4f} ± {spread(bests):.4f} (n={len(rows)})")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of the largest process: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
