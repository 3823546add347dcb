"""The default study written by hand with Ray Tune: what a user who knows Tune would write instead of hpsearch.

    python benchmarks/reference_tune.py [--trials 30] [--max-epochs 12] [--concurrency 2] [--seed 0] [--noop]

The same training code as hpsearch's `cnn` trainable (trainables/cnn.py, one Tune report and checkpoint per
epoch), the same space as search_spaces/digits_cnn.yaml (momentum only for sgd and rmsprop), OptunaSearch with
TPE, ASHA with the space's grace period and reduction factor, MLflowLoggerCallback (a parent-less run per
trial in MLFLOW_TRACKING_URI), `reuse_actors=True`, on an embedded Ray. `--noop` runs trials that report one
result and return, to measure bookkeeping alone. Prints one JSON line: wall seconds and trials finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def define_space(trial) -> dict:
    """search_spaces/digits_cnn.yaml's params, define-by-run (momentum only where the optimizer uses it)."""
    trial.suggest_float("lr", 1e-4, 0.1, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128])
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam", "rmsprop"])
    if optimizer in ("sgd", "rmsprop"):
        trial.suggest_float("momentum", 0.5, 0.99)
    trial.suggest_int("conv_blocks", 1, 3)
    trial.suggest_int("maps", 8, 48, step=8)
    trial.suggest_float("dropout", 0.0, 0.5)
    trial.suggest_categorical("activation", ["relu", "elu", "gelu"])
    trial.suggest_categorical("initializer", ["default", "he_normal", "xavier_uniform"])
    trial.suggest_categorical("batch_norm", [True, False])
    return {"kernel_size": 3, "dense_units": 128, "lr_schedule": "cosine"}  # the space's fixed values


def noop_space(trial) -> None:
    """benchmarks/spaces/noop.yaml's one param."""
    trial.suggest_float("x", 0.0, 1.0)


def train_cnn(config: dict) -> None:
    from trainables.cnn import train

    train(config)


def parse_study_arguments(doc: str) -> argparse.Namespace:
    """The flags both reference scripts take: the study's size, the seed, and --noop."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noop", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_study_arguments(__doc__)

    started = time.perf_counter()
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    ray.init(runtime_env={"env_vars": {"PYTHONPATH": f"{REPO}:{REPO / 'benchmarks'}"}}, include_dashboard=False, logging_level="ERROR")
    searcher = OptunaSearch(space=noop_space if args.noop else define_space, metric="val_acc", mode="max", seed=args.seed)
    from noop_trainable import train as train_noop

    trainable = train_noop if args.noop else train_cnn
    fixed = {"data": {"dataset": "digits", "val_fraction": 0.2, "seed": 0}, "max_epochs": args.max_epochs}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable), {"cpu": 1}),
        param_space=fixed,
        tune_config=tune.TuneConfig(
            search_alg=tune.search.ConcurrencyLimiter(searcher, max_concurrent=args.concurrency),
            scheduler=None if args.noop else ASHAScheduler(  # FIFO for no-op trials, as benchmarks/spaces/noop.yaml
                metric="val_acc", mode="max", time_attr="training_iteration", max_t=args.max_epochs,
                grace_period=min(2, args.max_epochs), reduction_factor=3),
            num_samples=args.trials,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            storage_path=os.environ.get("REFERENCE_STORAGE", "/tmp/reference-tune"),
            callbacks=[MLflowLoggerCallback(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
                                            experiment_name="reference-tune")],
            verbose=0,
        ),
    )
    results = tuner.fit()
    finished = sum(1 for r in results if r.error is None)
    ray.shutdown()
    print(json.dumps({"wall_s": time.perf_counter() - started, "trials": finished}))


if __name__ == "__main__":
    main()
