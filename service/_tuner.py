"""Build a study's Ray Tune `Tuner`: the trainable and its resources, the searcher, the scheduler, the callbacks.

A new study gets a new Tuner; a resumed one restores Tune's saved state, in which Tune kept the searcher and
the callbacks (pickled with the study's context) and every trial's last checkpoint.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import TYPE_CHECKING, Callable

from service._context import StudyContext
from service._errors import StudyError

if TYPE_CHECKING:
    from ray.tune import Tuner

# Plots on the study's MLflow run are redrawn at most this often while it runs.
REPORT_INTERVAL_S = float(os.environ.get("HPSEARCH_REPORT_INTERVAL_S", "120"))


def build_tuner(ctx: StudyContext, *, resume: bool, seed_trials: list) -> "Tuner":
    from ray import tune

    from service._progress import StudyProgress
    from service._searcher import StudySearcher
    from service._trial_runs import MlflowTrialLogger

    space = ctx.space
    trainable = tune.with_resources(
        reporting_placement(load_trainable(trainable_target(space))),
        {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    )
    if resume:
        if not tune.Tuner.can_restore(str(ctx.tune_path)):
            raise StudyError(
                f"study {ctx.study_id} has no saved Tune state at {ctx.tune_path}; it cannot be resumed (submit it again)"
            )
        return tune.Tuner.restore(str(ctx.tune_path), trainable=trainable, resume_unfinished=True, resume_errored=False)

    searcher = StudySearcher(study_name=ctx.study_id, storage_url=ctx.optuna_storage, space=space,
                             seed_trials=seed_trials)
    progress = StudyProgress(ctx)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler_for(ctx),
            num_samples=space.budget.trials,
            max_concurrent_trials=space.budget.concurrency,
            time_budget_s=space.budget.time_s,
            trial_dirname_creator=trial_dirname,
            # Trials with the same resources run in the same worker process one after another, so each
            # pays torch's import and the data load once per worker, not once per trial.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=ctx.study_id,
            storage_path=str(ctx.tune_path.parent),
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[MlflowTrialLogger(ctx, report_interval_s=REPORT_INTERVAL_S), progress],
            stop=progress,  # the same instance: it ends the study when the failure budget is spent
            verbose=0,
        ),
    )


def scheduler_for(ctx: StudyContext):
    """ASHA, the median rule or FIFO, acting on the primary metric with epochs as time."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule

    s = ctx.space.scheduler
    if s.type == "asha":
        return AsyncHyperBandScheduler(
            time_attr="training_iteration", metric=ctx.metric, mode=ctx.mode, max_t=ctx.space.budget.max_epochs,
            grace_period=s.grace_period, reduction_factor=s.reduction_factor,
        )
    if s.type == "median":
        return MedianStoppingRule(
            time_attr="training_iteration", metric=ctx.metric, mode=ctx.mode, grace_period=s.grace_period,
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


def reporting_placement(train_fn: Callable):
    """Tune's trainable for `train_fn`, whose every result also says where the trial ran: the Ray node id
    (`node_id`) and the GPU ids Ray gave it (`gpu_ids`, e.g. "0" or "0,1"; "" without GPUs).

    Tune's own results name only the node's IP, which every node of one machine shares, and the GPU ids are
    known only inside the trial's worker; adding them next to Tune's auto-filled `node_ip` and `pid` keeps the
    trainables unaware of it. The class is local, so Ray ships it by value: workers need not import `service`."""
    from ray.tune.trainable import wrap_function

    if inspect.isclass(train_fn):  # a user's own Trainable class reports what it reports
        return train_fn

    class PlacedTrainable(wrap_function(train_fn)):
        def get_auto_filled_metrics(self, *args, debug_metrics_only: bool = False, **kwargs) -> dict:
            import ray

            metrics = super().get_auto_filled_metrics(*args, debug_metrics_only=debug_metrics_only, **kwargs)
            if not debug_metrics_only:
                metrics["node_id"] = ray.get_runtime_context().get_node_id()
                metrics["gpu_ids"] = ",".join(str(i) for i in ray.get_gpu_ids())
            return metrics

    return PlacedTrainable
