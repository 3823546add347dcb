"""The default study written with plain Optuna: what a user on one machine would write instead of hpsearch.

    python benchmarks/reference_optuna.py [--trials 30] [--max-epochs 12] [--concurrency 2] [--seed 0] [--noop]

The same training loop as hpsearch's `cnn` trainable (trainables/_loop.py's `fit`, which also writes the
per-epoch checkpoint), the same space as search_spaces/digits_cnn.yaml, TPE, a SuccessiveHalvingPruner with
the space's grace period and reduction factor, `study.optimize(n_jobs=concurrency)` in threads with one torch
thread each, storage in OPTUNA_STORAGE (default: a SQLite file in the working directory) and an MLflow run per
trial with every epoch's metrics in MLFLOW_TRACKING_URI. `--noop` runs trials that return at once, to measure
bookkeeping alone. Prints one JSON line: wall seconds and trials finished.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reference_tune import define_space, parse_study_arguments  # noqa: E402  (one statement for both)


def main() -> None:
    args = parse_study_arguments(__doc__)

    started = time.perf_counter()
    import mlflow
    import optuna
    import torch

    from trainables._loop import fit

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment(f"reference-optuna-{time.time_ns()}")
    data = {"dataset": "digits", "val_fraction": 0.2, "seed": 0}

    def objective(trial: optuna.Trial) -> float:
        config = {**define_space(trial), **trial.params, "data": data, "max_epochs": args.max_epochs}
        run = client.create_run(experiment_id, run_name=f"trial-{trial.number}")
        client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in trial.params.items()])
        if args.noop:
            client.set_terminated(run.info.run_id, "FINISHED")
            return 0.5
        best = {"value": float("-inf")}

        def report(metrics: dict, _checkpoint_dir: str) -> None:
            epoch = metrics["epoch"]
            client.log_batch(run.info.run_id, metrics=[mlflow.entities.Metric(k, float(v), int(time.time() * 1000), epoch)
                                                       for k, v in metrics.items()])
            best["value"] = max(best["value"], metrics["val_acc"])
            trial.report(metrics["val_acc"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            fit("cnn", config, report)
        except optuna.TrialPruned:
            client.set_terminated(run.info.run_id, "KILLED")
            raise
        except Exception:  # a diverged loss, say: the trial fails, the study goes on (catch= below)
            client.set_terminated(run.info.run_id, "FAILED")
            raise
        client.set_terminated(run.info.run_id, "FINISHED")
        return best["value"]

    study = optuna.create_study(
        storage=os.environ.get("OPTUNA_STORAGE", "sqlite:///reference-optuna.db"), direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
    )
    study.optimize(objective, n_trials=args.trials, n_jobs=args.concurrency, catch=(Exception,))
    finished = sum(1 for t in study.trials if t.state.is_finished())
    print(json.dumps({"wall_s": time.perf_counter() - started, "trials": finished}))


if __name__ == "__main__":
    main()
