"""The fixed cost of a study on an embedded Ray: from the command's start to its first trial running, and from
its last trial's end to the exit code.

    python benchmarks/fixed_cost.py [--runs 5] [--trials 4] [--space FILE] [--set KEY=VALUE ...]

Runs `hpsearch submit benchmarks/spaces/noop.yaml --set budget.trials=N` (trials that do nothing, so nearly
all of the time is the fixed part) in a fresh process each time, with a fresh HPSEARCH_HOME and MLflow store,
and timestamps every line the command prints as it arrives: "start → first trial" ends at the first
`trial NNNN started` line, "start → first trial ended" at the first trial's `completed`/`pruned`/`failed`
line (with the noop space, one result; with `--space search_spaces/digits_cnn.yaml --set budget.max_epochs=2`,
the worker's imports of torch and the training loop and two epochs),
"last trial → exit" begins at the last trial's end line. Prints each run and the median and range of every
part and of "fixed" (start → first trial plus last trial → exit).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from compare import wait_for_report_drawers

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "benchmarks/spaces/noop.yaml"
STARTED = re.compile(r"^trial \d+ started")
ENDED = re.compile(r"^trial \d+ (completed|pruned|failed)")


def one_run(trials: int, space: Path = SPACE, overrides: tuple[str, ...] = ()) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hps-fixed-") as home:
        env = {**os.environ, "HPSEARCH_HOME": home, "PYTHONPATH": str(REPO / "benchmarks")}
        command = [sys.executable, "-m", "service.cli", "submit", str(space), "--set", f"budget.trials={trials}",
                   *(arg for o in overrides for arg in ("--set", o)), "--tracking-uri", f"sqlite:///{home}/mlflow.db"]
        lines: list[tuple[float, str]] = []
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)

        def read(stream) -> None:
            for line in stream:
                lines.append((time.perf_counter() - started, line.strip()))

        readers = [threading.Thread(target=read, args=(s,)) for s in (process.stdout, process.stderr)]
        for reader in readers:
            reader.start()
        code = process.wait()
        exited = time.perf_counter() - started
        for reader in readers:
            reader.join()
        wait_for_report_drawers()  # hpsearch's last report is drawn after its exit: not into the next run
    if code != 0:
        raise SystemExit(f"hpsearch exited {code}:\n" + "\n".join(text for _, text in lines[-20:]))
    first = min(t for t, text in lines if STARTED.match(text))
    first_ended = min(t for t, text in lines if ENDED.match(text))
    last = max(t for t, text in lines if ENDED.match(text))
    return {"start → first trial": first, "start → first trial ended": first_ended, "last trial → exit": exited - last,
            "fixed": first + exited - last, "wall": exited}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--space", type=Path, default=SPACE, help="the space file (default: the no-op trials)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as hpsearch's")
    args = parser.parse_args()
    space, overrides = args.space.resolve(), tuple(args.overrides)
    one_run(args.trials, space, overrides)  # warm-up: fills the OS file cache
    runs = []
    for i in range(args.runs):
        runs.append(one_run(args.trials, space, overrides))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items()), flush=True)
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key:<22} median {statistics.median(values):6.2f} s  ({min(values):.2f}–{max(values):.2f}, n={args.runs})")


if __name__ == "__main__":
    main()
