"""Start-up time of commands that run no study: `hpsearch --help` and `hpsearch validate`.

    python benchmarks/cli_startup.py [--runs 10]

Each command runs in a fresh process; prints mean ± std of wall time over the runs, after one warm-up run
(which fills the OS file cache).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HPSEARCH = [sys.executable, "-m", "service.cli"]
COMMANDS = {
    "hpsearch --help": HPSEARCH + ["--help"],
    "hpsearch validate digits_cnn.yaml": HPSEARCH + ["validate", str(REPO / "search_spaces/digits_cnn.yaml")],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    for name, command in COMMANDS.items():
        subprocess.run(command, check=True, capture_output=True)  # warm-up
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        print(f"{name:<36} {statistics.mean(times):.3f} ± {statistics.stdev(times):.3f} s  (n={args.runs})")


if __name__ == "__main__":
    main()
