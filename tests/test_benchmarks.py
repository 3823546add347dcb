"""The benchmark scripts still run: each in its smallest form, on what this machine has."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import REPO

pytestmark = pytest.mark.slow


def test_search_quality_smoke_writes_a_row_per_strategy_and_a_plot(tmp_path):
    strategies = ["TPE + ASHA", "TPE startup 5 + ASHA"]
    out = subprocess.run(
        [sys.executable, "benchmarks/search_quality.py", "--smoke", "--tasks", "synthetic", "--out", str(tmp_path),
         "--strategies", *strategies],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )

    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / "synthetic.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["strategy", "random + FIFO", *strategies]  # the baseline always runs: it sets X
    assert (tmp_path / "synthetic.png").read_bytes().startswith(b"\x89PNG")
