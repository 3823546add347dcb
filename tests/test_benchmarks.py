"""The benchmark scripts still run: each in its smallest form, on what this machine has."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("*.py")
                                           if "argparse" in p.read_text()))
def test_every_benchmark_script_prints_its_help(script):
    """`--help` is how a reader learns a script's options: argparse formats each option's help with %, so a
    strategy named "... 25%" once made `search_quality.py --help` end in a traceback."""
    out = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)

    assert out.returncode == 0 and out.stdout.startswith("usage:"), out.stderr[-2000:]


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


def _search_quality():
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_quality", REPO / "benchmarks" / "search_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_search_quality_replays_trials_in_flight_together_and_the_same_way_twice():
    """With --concurrency 2 two trials train in turn, an epoch each (so the first ends only after 2 × 27 − 1
    epochs were spent in all), and a seeded replay gives the same curve every time."""
    from service.space import load_space

    search_quality = _search_quality()
    curves = {}
    for concurrency in (1, 2, 2):
        space = load_space(str(REPO / "search_spaces" / "synthetic_curves.yaml"), overrides=[
            "sampler={type: tpe, seed: 3}", "scheduler={type: fifo}", f"budget.concurrency={concurrency}",
            "budget.trials=200"])
        curve, _ = search_quality.replay(space, budget_epochs=4 * 27, concurrency=concurrency)
        curves.setdefault(concurrency, []).append(curve)

    serial, (paired, again) = curves[1][0], curves[2]
    assert [spent for spent, _ in serial] == [27, 54, 81, 108]
    assert [spent for spent, _ in paired] == [53, 54, 107, 108, 135]  # one started at 107: it runs to its end
    assert paired == again


def test_a_replay_that_fails_leaves_no_trial_waiting(monkeypatch):
    """A trial's error ends the replay; the trials in flight beside it are stopped, not left blocked."""
    import threading

    from service.space import load_space

    search_quality = _search_quality()

    def train(space, config: dict, report) -> None:
        for epoch in (1, 2, 3):
            report({"epoch": epoch, "val_acc": config["lr"]})
        raise ValueError("a trainable's own bug")

    monkeypatch.setattr(search_quality, "_train", train)
    space = load_space(str(REPO / "search_spaces" / "synthetic_curves.yaml"), overrides=[
        "sampler={type: random, seed: 0}", "scheduler={type: fifo}", "budget.concurrency=2", "budget.trials=50"])
    before = threading.active_count()

    with pytest.raises(ValueError, match="own bug"):
        search_quality.replay(space, budget_epochs=4 * 27, concurrency=2)
    assert threading.active_count() == before


def test_a_replay_whose_searcher_gives_no_trial_ends_and_stops_the_trial_that_never_stepped():
    """A space allowing one trial at a time, replayed two at a time: the second ask gets no trial and the replay
    fails at once; the first trial, created but never stepped, is stopped before it trains (it once waited for
    a step that never came, and the replay hung)."""
    import threading

    from service.space import load_space

    search_quality = _search_quality()
    space = load_space(str(REPO / "search_spaces" / "synthetic_curves.yaml"), overrides=[
        "sampler={type: random, seed: 0}", "scheduler={type: fifo}", "budget.concurrency=1", "budget.trials=50"])
    before = threading.active_count()

    with pytest.raises(RuntimeError, match="the searcher gave no trial 1"):
        search_quality.replay(space, budget_epochs=30, concurrency=2)
    assert threading.active_count() == before


def test_search_quality_cache_reads_a_kept_curve_instead_of_training_again(tmp_path, monkeypatch):
    """--cache keeps every replayed curve; a second run with the same cache reads them (a curve edited in the
    cache shows in its table); an ASHA curve's key, unlike a FIFO one's, changes with service/_asha.py, and a
    csv task's with its data file."""
    from service.space import load_space

    def run(out):
        done = subprocess.run(
            [sys.executable, "benchmarks/search_quality.py", "--smoke", "--tasks", "synthetic", "--out", str(out),
             "--cache", str(tmp_path / "cache"), "--strategies", "TPE + ASHA"],
            cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return (out / "synthetic.md").read_text()

    first = run(tmp_path / "a")
    kept = sorted((tmp_path / "cache").glob("*.json"))
    assert len(kept) == 4  # 2 strategies × 2 seeds
    assert run(tmp_path / "b") == first
    for path in kept:  # every kept curve says the best was 0.1234 from the first trial on
        data = json.loads(path.read_text())
        data["curve"] = [[spent, 0.1234] for spent, _ in data["curve"]]
        path.write_text(json.dumps(data))
    assert "0.1234" not in first and "0.1234 [0.1234, 0.1234]" in run(tmp_path / "c")

    search_quality = _search_quality()
    path = REPO / "search_spaces" / "synthetic_curves.yaml"
    fifo, asha = (load_space(str(path), overrides=[f"scheduler={{type: {kind}}}"]) for kind in ("fifo", "asha"))
    keys = {kind: search_quality._curve_key(space, 81, 1) for kind, space in (("fifo", fifo), ("asha", asha))}
    tabular = load_space(str(REPO / "search_spaces" / "tabular_mlp.yaml"), overrides=["scheduler={type: fifo}"])
    keys["tabular"] = search_quality._curve_key(tabular, 81, 1)
    search_quality._code_and_packages.cache_clear()
    real_read = Path.read_bytes
    changed = ("_asha.py", "tabular.csv")
    monkeypatch.setattr(Path, "read_bytes", lambda self: real_read(self) + (b"#" if self.name in changed else b""))
    assert search_quality._curve_key(fifo, 81, 1) == keys["fifo"]
    assert search_quality._curve_key(asha, 81, 1) != keys["asha"]
    assert search_quality._curve_key(tabular, 81, 1) != keys["tabular"]  # its csv changed


def test_search_quality_cache_key_covers_every_module_a_replay_imports():
    """The cache's key digests REPLAY_CODE (and service/_asha.py): a replay, ASHA and FIFO, on the synthetic and on
    a torch task, in a fresh process, imports no other module of service/ or trainables/."""
    script = """
import fnmatch, json, sys
sys.path.insert(0, "benchmarks")
import search_quality as sq
from service.space import load_space
for task, scheduler in (("synthetic_curves.yaml", "{type: asha, rung_check: true}"), ("digits_small_mlp.yaml", "{type: fifo}")):
    sq.replay(load_space("search_spaces/" + task, overrides=["scheduler=" + scheduler, "budget.trials=50"]), 30, 1)
loaded = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
print(json.dumps([f[len(str(sq.ROOT)) + 1:] for f in loaded if f.startswith(str(sq.ROOT / "service"))
                  or f.startswith(str(sq.ROOT / "trainables"))]))
print(json.dumps(list(sq.REPLAY_CODE) + [sq._ASHA_CODE]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)

    assert out.returncode == 0, out.stderr[-3000:]
    loaded, patterns = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    import fnmatch

    assert "service/_searcher.py" in loaded and "trainables/_loop.py" in loaded
    assert [f for f in loaded if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
