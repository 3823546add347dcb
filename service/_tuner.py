"""Build a study's Ray Tune `Tuner`: the trainable and its resources, the searcher, the scheduler, the callbacks.

A new study gets a new Tuner; a resumed one restores Tune's saved state, in which Tune kept the searcher and
the callbacks (pickled with the study's context) and every trial's last checkpoint.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from typing import TYPE_CHECKING, Callable

from service._context import StudyContext
from service._errors import StudyError
from service._outcome import FAULT_KEY, FAULT_TRACE_KEY

if TYPE_CHECKING:
    from ray.tune import Tuner

# Plots on the study's MLflow run are redrawn at most this often while it runs.
REPORT_INTERVAL_S = float(os.environ.get("HPSEARCH_REPORT_INTERVAL_S", "120"))


def build_tuner(ctx: StudyContext, *, resume: bool, seed_trials: list) -> "Tuner":
    from ray import tune

    from service._checkpoints import KEEP, TrialCheckpoints
    from service._progress import StudyProgress
    from service._searcher import StudySearcher
    from service._trial_runs import MlflowTrialLogger
    from service._tune_fixes import install as install_tune_fixes

    install_tune_fixes()
    space = ctx.space
    trainable = tune.with_resources(
        trial_trainable(load_trainable(trainable_target(space))),
        {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    )
    if resume:
        if not tune.Tuner.can_restore(str(ctx.tune_path)):
            raise StudyError(
                f"study {ctx.study_id} has no saved Tune state at {ctx.tune_path}; it cannot be resumed (submit it again)"
            )
        return tune.Tuner.restore(str(ctx.tune_path), trainable=trainable, resume_unfinished=True, resume_errored=False)

    searcher = StudySearcher(study_name=ctx.study_id, storage_url=ctx.optuna_storage, space=space,
                             seed_trials=seed_trials, experiment_path=str(ctx.tune_path))
    progress = StudyProgress(ctx)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler_for(ctx),
            num_samples=-1,  # the searcher keeps budget.trials: Tune's own count may not survive a restore
            max_concurrent_trials=space.budget.concurrency,
            # budget.time is kept by StudyProgress: it counts from the first trial's start, not from here.
            trial_dirname_creator=trial_dirname,
            # Trials with the same resources run in the same worker process one after another, so each
            # pays torch's import and the data load once per worker, not once per trial.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=ctx.study_id,
            storage_path=str(ctx.tune_path.parent),
            # Only lost workers and nodes reach Tune as errors (a trial's own are its result, see
            # trial_trainable): those are retried from the trial's last checkpoint.
            failure_config=tune.FailureConfig(max_failures=space.budget.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP),
            callbacks=[TrialCheckpoints(), MlflowTrialLogger(ctx, report_interval_s=REPORT_INTERVAL_S), progress],
            stop=progress,  # the same instance: it ends the study when the failure budget is spent
            verbose=0,
        ),
    )


def scheduler_for(ctx: StudyContext):
    """ASHA, the median rule or FIFO, acting on the primary metric with epochs as time. ASHA is
    `service._asha.Asha`: Tune's rule, with brackets dealt in turn, with `sampler.deterministic` judging each
    trial against the trials that finished before it started (so that its decisions do not depend on timing
    either), and its rungs read back from the study's learning curves when the study resumes. Without an Optuna
    storage (`ctx.optuna_storage` None: the search-quality benchmark's replays) there is nothing to read back."""
    from ray.tune.schedulers import FIFOScheduler, MedianStoppingRule

    from service._asha import Asha
    from service._optuna import StudyCurves

    s = ctx.space.scheduler
    if s.type == "asha":
        return Asha(metric=ctx.metric, mode=ctx.mode, max_epochs=ctx.space.budget.max_epochs,
                    grace_period=ctx.space.grace_epochs, reduction_factor=s.reduction_factor, brackets=s.brackets,
                    rung_check=s.rung_check,
                    window=ctx.space.budget.concurrency if ctx.space.sampler.deterministic else None,
                    curves=StudyCurves(ctx.optuna_storage, ctx.study_id) if ctx.optuna_storage else None)
    if s.type == "median":
        return MedianStoppingRule(
            time_attr="training_iteration", metric=ctx.metric, mode=ctx.mode, grace_period=ctx.space.grace_epochs,
            min_samples_required=s.min_samples_required,
        )
    return FIFOScheduler()


def trainable_target(space) -> str:
    """`module:function` of the space's trainable (a built-in's from the catalog)."""
    spec = space.trainable_spec
    return spec.target if spec is not None else space.trainable


def load_trainable(target: str) -> Callable:
    module_name, _, func_name = target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def trial_trainable(train_fn: Callable):
    """Tune's trainable for the function `train_fn`, run the way hpsearch runs every trial:

    - An exception raised by the trial's own code (a bug, a NaN the trainable caught, CUDA out of memory)
      ends the trial with one last result carrying the error (FAULT_KEY and its traceback) instead of reaching
      Tune as an error. Tune's errors are then only a lost worker or node, which it retries from the trial's
      last checkpoint (FailureConfig); a trial's own fault is never retried.
    - Every result also says where the trial ran: the Ray node id (`node_id`) and the GPU ids Ray gave it
      (`gpu_ids`, e.g. "0" or "0,1"; "" without GPUs). Tune's own results name only the node's IP, which every
      node of one machine shares, and the GPU ids are known only inside the trial's worker.

    The trainables stay unaware of both. The class is local, so Ray ships it by value: workers need not import
    `service`. A user's own Trainable class is used as it is."""
    from ray.tune.trainable import wrap_function

    if inspect.isclass(train_fn):
        return train_fn

    @functools.wraps(train_fn)
    def run(config: dict):
        try:
            return train_fn(config)
        except Exception as exc:  # SystemExit, which Tune uses to end a trial's thread, passes through
            import traceback

            from ray import tune

            tune.report({FAULT_KEY: f"{type(exc).__name__}: {exc}"[:2000], FAULT_TRACE_KEY: traceback.format_exc()})

    class PlacedTrainable(wrap_function(run)):
        def get_auto_filled_metrics(self, *args, debug_metrics_only: bool = False, **kwargs) -> dict:
            import ray

            metrics = super().get_auto_filled_metrics(*args, debug_metrics_only=debug_metrics_only, **kwargs)
            if not debug_metrics_only:
                metrics["node_id"] = ray.get_runtime_context().get_node_id()
                metrics["gpu_ids"] = ",".join(str(i) for i in ray.get_gpu_ids())
            return metrics

    return PlacedTrainable
