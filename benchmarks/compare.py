"""hpsearch side by side with what a user would pick instead, on the same training code and the same machine.

    python benchmarks/compare.py [--rounds 5] [--trials 30] [--max-epochs 12] [--noop-trials 200]
                                 [--arms hpsearch,tune,optuna] [--skip-noop] [--stores sqlite|postgresql]

Arms, each a fresh process in a fresh temporary folder (its own SQLite stores), run alternately round after
round so that a slow spell of the machine hits every arm:
    hpsearch  `hpsearch submit search_spaces/digits_cnn.yaml --json` (embedded Ray)
    tune      benchmarks/reference_tune.py: Ray Tune + OptunaSearch(TPE) + ASHA + MLflowLoggerCallback
    optuna    benchmarks/reference_optuna.py: study.optimize(n_jobs=2), TPE, SuccessiveHalvingPruner, an
              MLflow run per trial
Per arm and round: wall time (process start to exit; for hpsearch also until its last report, which a child
process draws after the exit code, is on the study's run: the next arm starts only then), the epochs trained and their compute (the sum of every
epoch's `epoch_time_s`, read back from the arm's MLflow store), "limit" = that compute / the concurrency (the
wall time a perfect scheduler would need for the same epochs), and the peak RSS of the largest process that
the arm's process tree reaped. Then the no-op throughput: 200 trials that report once
(benchmarks/noop_trainable.py), trials per second of wall time, per arm.

`--stores postgresql` gives every arm fresh PostgreSQL databases instead (hpsearch's registry, Optuna's storage
and MLflow's store, as on the cluster; the references' MLflow and Optuna stores), created on the server of
HPSEARCH_BENCH_PG_URL (default postgresql+psycopg2://postgres@127.0.0.1:5432/postgres) and dropped afterwards.

Prints a table of medians with ranges (the ratios are each round's, then the median), writes every
measurement to benchmarks/results/compare-<time>.json and a PNG of wall time per arm per round beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
CONCURRENCY = 2  # search_spaces/digits_cnn.yaml's budget.concurrency; the references are run with the same
PG_ADMIN_URL = os.environ.get("HPSEARCH_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
_databases = itertools.count()


# Runs the arm's command as its child, then prints the peak RSS of the largest process it waited for (the
# arm's own process, or one of the Ray processes it started and reaped) as the last line of stderr.
_MEASURE = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


def arm_command(arm: str, noop: bool, trials: int, max_epochs: int) -> list[str]:
    """The arm's command line; `trials` and `max_epochs` as in the study (the references take them as flags)."""
    py = sys.executable
    if arm == "hpsearch":
        space = BENCH / "spaces" / "noop.yaml" if noop else REPO / "search_spaces" / "digits_cnn.yaml"
        return [py, "-m", "service.cli", "submit", str(space), "--json", "--set", f"budget.trials={trials}",
                "--set", f"budget.max_epochs={max_epochs}"]
    script = BENCH / ("reference_tune.py" if arm == "tune" else "reference_optuna.py")
    return [py, str(script), "--concurrency", str(CONCURRENCY), "--trials", str(trials),
            "--max-epochs", str(max_epochs)] + (["--noop"] if noop else [])


@contextlib.contextmanager
def stores(kind: str, tmp: str):
    """The store URLs of one arm's run: SQLite files in `tmp`, or fresh PostgreSQL databases dropped after."""
    if kind == "sqlite":
        # hpsearch's registry and Optuna storage: its defaults, files in $HPSEARCH_HOME
        yield {"optuna": f"sqlite:///{tmp}/optuna.db", "mlflow": f"sqlite:///{tmp}/mlflow.db"}
        return
    import sqlalchemy

    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    names = {role: f"hpsearch_bench_{os.getpid()}_{next(_databases)}_{role}" for role in ("registry", "optuna", "mlflow")}
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield {role: admin.url.set(database=name).render_as_string(hide_password=False)
               for role, name in names.items()}
    finally:
        with admin.connect() as conn:
            for name in names.values():  # WITH (FORCE): PostgreSQL 13 or later
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_arm(arm: str, trials: int, max_epochs: int, noop: bool = False, store_kind: str = "sqlite") -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{arm}-") as tmp, stores(store_kind, tmp) as urls:
        env = dict(os.environ, HPSEARCH_HOME=f"{tmp}/home", MLFLOW_TRACKING_URI=urls["mlflow"],
                   OPTUNA_STORAGE=urls["optuna"], REFERENCE_STORAGE=f"{tmp}/tune",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), str(BENCH), os.environ.get("PYTHONPATH")])))
        if "registry" in urls:
            env.update(HPSEARCH_REGISTRY_URL=urls["registry"], HPSEARCH_OPTUNA_STORAGE=urls["optuna"])
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _MEASURE, *arm_command(arm, noop, trials, max_epochs)], cwd=tmp, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{arm} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        wait_for_report_drawers()
        peak_mib = float(done.stderr.strip().splitlines()[-1].removeprefix("peak_rss_kib=")) / 1024
        row = {"arm": arm, "wall_s": wall, "peak_rss_mib": peak_mib,
               "report_s": time.perf_counter() - started if arm == "hpsearch" else wall}
        if not noop:
            row.update(_epochs(urls["mlflow"]))
            row["limit_s"] = row["compute_s"] / CONCURRENCY
        return row


def wait_for_report_drawers(timeout_s: float = 300) -> None:
    """Until no `python -m service._report_drawer` (hpsearch's last report, drawn after its exit) is running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    running = running or b"service._report_drawer" in fh.read()
            except OSError:
                continue
        if not running:
            return
        time.sleep(0.05)


def _epochs(tracking_uri: str) -> dict:
    """Epochs trained and their summed compute, from every run's `epoch_time_s` history in the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    epochs, compute = 0, 0.0
    for run in client.search_runs(experiments, max_results=50000):
        if "epoch_time_s" not in run.data.metrics:
            continue
        history = client.get_metric_history(run.info.run_id, "epoch_time_s")
        steps = {m.step: m.value for m in history}  # one value per epoch, whatever the logger's step is
        epochs += len(steps)
        compute += sum(steps.values())
    return {"epochs": epochs, "compute_s": compute}


def _median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--arms", default="hpsearch,tune,optuna")
    parser.add_argument("--trials", type=int, default=30, help="trials per study (the default study's 30)")
    parser.add_argument("--max-epochs", type=int, default=12, help="the default study's 12")
    parser.add_argument("--noop-trials", type=int, default=200)
    parser.add_argument("--skip-noop", action="store_true")
    parser.add_argument("--stores", choices=["sqlite", "postgresql"], default="sqlite",
                        help="every arm's stores: SQLite files (default) or fresh PostgreSQL databases")
    args = parser.parse_args()
    arms = args.arms.split(",")

    rounds = []
    for i in range(args.rounds):
        order = arms[i % len(arms):] + arms[:i % len(arms)]  # who goes first rotates
        rows = {arm: run_arm(arm, args.trials, args.max_epochs, store_kind=args.stores) for arm in order}
        rounds.append(rows)
        print(f"round {i}: " + ", ".join(f"{a} {rows[a]['wall_s']:.1f} s" for a in arms), flush=True)
    noop = {} if args.skip_noop else {arm: run_arm(arm, args.noop_trials, 1, noop=True, store_kind=args.stores)
                                      for arm in arms}

    print(f"\n| | {' | '.join(arms)} |\n|---|{'---|' * len(arms)}")
    if rounds:
        base = arms[0]
        for label, value in [
            (f"wall ÷ {base}'s", lambda r, a: r[a]["wall_s"] / r[base]["wall_s"]),
            ("wall, s", lambda r, a: r[a]["wall_s"]),
            ("wall until the last report is on the run, s", lambda r, a: r[a]["report_s"]),
            ("wall ÷ limit", lambda r, a: r[a]["wall_s"] / r[a]["limit_s"] if r[a]["limit_s"] else float("nan")),
            ("epochs trained", lambda r, a: r[a]["epochs"]),
            ("peak RSS, largest process, MiB", lambda r, a: r[a]["peak_rss_mib"]),
        ]:
            print(f"| {label} (median, range) | " + " | ".join(
                _median_range([value(r, a) for r in rounds]) for a in arms) + " |")
    if noop:
        print(f"| {args.noop_trials} no-op trials ({args.stores}), trials/s | " + " | ".join(
            f"{args.noop_trials / noop[a]['wall_s']:.1f}" for a in arms) + " |")

    out = BENCH / "results" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rounds": rounds, "noop": noop, "stores": args.stores, "machine": platform.platform(),
                               "cpus": os.cpu_count(), "load_at_end": os.getloadavg()}, indent=1))
    if rounds:
        _plot(rounds, arms, out.with_suffix(".png"))
    print(f"\nwritten: {out} and {out.with_suffix('.png')}")


def _plot(rounds: list[dict], arms: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for arm in arms:
        ax.plot(range(len(rounds)), [r[arm]["wall_s"] for r in rounds], marker="o", label=arm)
    ax.set_xlabel("round")
    ax.set_ylabel("wall time, s")
    ax.set_title("search_spaces/digits_cnn.yaml, per arm and round")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
