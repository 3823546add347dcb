"""The study runner: a validated space in, a finished (or stopped) study out.

Reads top to bottom in the order a study runs: registry row → MLflow experiment and parent run → Ray →
searcher, scheduler, Tuner → fit → reconcile Optuna → summary in MLflow and the registry.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import math
import os
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from service._registry import Registry, StudyRecord, new_study_id
from service._states import StudyStatus

QUEUED, RUNNING, SUCCEEDED, FAILED, STOPPED = (StudyStatus.QUEUED, StudyStatus.RUNNING, StudyStatus.SUCCEEDED,
                                               StudyStatus.FAILED, StudyStatus.STOPPED)
from service._settings import Settings
from service._studylog import append_log

logger = logging.getLogger(__name__)


class StudyError(Exception):
    """A study could not start or continue for a reason the user can act on (exit code 2)."""


@dataclass
class StudySummary:
    """The outcome of a study; `hpsearch submit --json` prints exactly this."""

    study_id: str
    name: str
    status: str
    best_value: Optional[float]
    best_params: Optional[dict]
    best_trial: Optional[int]
    metric: Any
    mode: Any
    n_trials: int
    n_completed: int
    n_pruned: int
    n_failed: int
    mlflow_tracking_uri: str
    mlflow_experiment_id: Optional[str]
    mlflow_parent_run_id: Optional[str]
    optuna_storage: str
    optuna_study_name: str
    tune_path: Optional[str]
    error: Optional[str] = None
    pareto_front: Optional[list] = None  # multi-objective: [{"trial", "values", "params"}] of the front
    registered_model: Optional[str] = None  # "name/version" in the MLflow Model Registry, with --register

    def to_dict(self) -> dict:
        return asdict(self)


def submit_study(
    space,
    settings: Settings,
    *,
    show_progress: bool = True,
    ray_address: Optional[str] = None,
    register: Optional[str] = None,
    warm_start: Optional[str] = None,
) -> StudySummary:
    """Record a new study in the registry and run it to the end on this machine's Ray (or `ray_address`)."""
    if ray_address:
        _init_ray(ray_address, space)  # reachable and admitted (token) before anything is recorded
    registry = Registry(settings.registry_url)
    seed_trials = _plan_warm_start(registry, warm_start, space, show_progress) if warm_start else []
    study_id = record_study(registry, space, settings, warm_start=warm_start, register=register).id
    return run_study(
        study_id, space, settings, registry=registry, show_progress=show_progress, ray_address=ray_address,
        register=register, seed_trials=seed_trials,
    )


def record_study(
    registry: Registry, space, settings: Settings, *, warm_start: Optional[str] = None, register: Optional[str] = None,
    source: Optional[str] = None,
) -> StudyRecord:
    """A new registry row (status queued) for `space`, its stores named by `settings`."""
    study_id = new_study_id(space.name)
    if warm_start:
        warm_start = registry.find_or_raise_by_id(warm_start).id
    return registry.create(
        study_id=study_id,
        name=space.name,
        space_text=space.text,
        space_source=source or space.source,
        space_overrides=space.overrides,
        metrics=space.metrics,
        modes=space.modes,
        optuna_storage=settings.optuna_storage,
        optuna_study_name=study_id,
        mlflow_tracking_uri=settings.tracking_uri,
        warm_start_from=warm_start,
        register_model=register,
    )


def _plan_warm_start(registry: Registry, source_id: str, space, show_progress: bool) -> list:
    """The earlier study's finished trials, translated into the new space (see service/_warmstart.py)."""
    import optuna

    from service._warmstart import WarmStartError, plan_warm_start

    source = registry.find_or_raise_by_id(source_id)
    study = optuna.load_study(study_name=source.optuna_study_name, storage=_optuna_storage(source.optuna_storage))
    try:
        plan = plan_warm_start(study, space, source_label=source.id)
    except WarmStartError as exc:
        raise StudyError(str(exc)) from None
    if show_progress:
        for line in plan.messages:
            print(f"warm start: {line}", file=sys.stderr, flush=True)
    return plan.trials


def resume_study(
    study_id: str,
    settings: Settings,
    *,
    show_progress: bool = True,
    ray_address: Optional[str] = None,
    register: Optional[str] = None,
) -> StudySummary:
    """Continue a stopped, failed or crashed study: finished trials are kept, unfinished ones continue."""
    if ray_address:
        _check_reachable(ray_address)
    registry = Registry(settings.registry_url)
    record = registry.find_or_raise_by_id(study_id)
    if record.status == SUCCEEDED:
        raise StudyError(f"study {record.id} already succeeded; nothing to resume (submit a new study instead)")
    if record.status == RUNNING and _driver_alive(record):
        raise StudyError(f"study {record.id} is still running (driver {record.driver}); stop it first")
    space = space_of(record)
    if ray_address:
        _init_ray(ray_address, space)  # a refused token fails here, before the study is marked running
    registry.update(record.id, stop_requested_at=None)
    return run_study(
        record.id, space, _stores_of(record, settings), registry=registry, show_progress=show_progress,
        ray_address=ray_address, resume=True, register=register or record.register_model,
    )


def run_registered_study(
    study_id: str, settings: Settings, *, show_progress: bool = True, ray_address: Optional[str] = None,
) -> StudySummary:
    """The driver of a study recorded earlier (by the API): `hpsearch run --study ID`.

    The space, its stores, warm start and model registration all come from the registry row. A study that
    already ran continues from its saved Tune state (the API's resume launches this too); a new one starts.
    A space that does not hold on this machine (its data files are missing here, say) fails the study with the
    reason, where `hpsearch status` shows it."""
    from service.space import SpaceError

    registry = Registry(settings.registry_url)
    record = registry.find_or_raise_by_id(study_id)
    if record.status == SUCCEEDED:
        raise StudyError(f"study {record.id} already succeeded; nothing to run")
    log_path = str(settings.log_path(record.id))
    try:
        space = space_of(record)
    except SpaceError as exc:
        append_log(log_path, f"study {record.id} cannot start here: {exc}")
        registry.update(record.id, status=FAILED, finished_at=_now(), error=str(exc))
        raise StudyError(str(exc)) from None
    stores = _stores_of(record, settings)
    tune_path = Path(record.tune_path) if record.tune_path else stores.tune_dir / record.id
    from ray.tune import Tuner

    resume = Tuner.can_restore(str(tune_path))
    seed_trials = []
    if not resume and record.warm_start_from:
        seed_trials = _plan_warm_start(registry, record.warm_start_from, space, show_progress)
    return run_study(
        record.id, space, stores, registry=registry, show_progress=show_progress, ray_address=ray_address,
        resume=resume, register=record.register_model, seed_trials=seed_trials,
    )


def space_of(record: StudyRecord):
    """The registry row's space, parsed as it was submitted. Relative data paths resolve from the folder of
    the file it came from when that folder is here, else from HPSEARCH_DATA_DIR (a cluster's data volume),
    else from the current directory."""
    from service.space import parse_space

    base_dir = None
    if record.space_source and os.path.isabs(record.space_source) and os.path.isdir(os.path.dirname(record.space_source)):
        base_dir = os.path.dirname(record.space_source)
    base_dir = base_dir or os.environ.get("HPSEARCH_DATA_DIR") or None
    return parse_space(
        record.space_text, source=record.space_source or "<registry>", overrides=record.space_overrides,
        base_dir=base_dir,
    )


def _stores_of(record: StudyRecord, settings: Settings) -> Settings:
    """The stores a study was created with (its MLflow and Optuna never move), under today's registry."""
    return Settings(
        home=settings.home,
        tracking_uri=record.mlflow_tracking_uri,
        optuna_storage=record.optuna_storage,
        registry_url=settings.registry_url,
    )


def run_study(
    study_id: str,
    space,
    settings: Settings,
    *,
    registry: Registry,
    show_progress: bool = True,
    ray_address: Optional[str] = None,
    resume: bool = False,
    register: Optional[str] = None,
    seed_trials: Optional[list] = None,
) -> StudySummary:
    from service._tracking import client_for, get_or_create_experiment, start_parent_run

    _configure_libraries()
    record = registry.find_or_raise_by_id(study_id)
    tune_path = Path(record.tune_path) if record.tune_path else settings.tune_dir / study_id
    log_path = str(settings.log_path(study_id))
    append_log(log_path, f"study {study_id} {'resumed' if resume else 'started'} by {_driver_id()}"
                         f"{' on the Ray cluster at ' + ray_address if ray_address else ' on an embedded Ray'}")

    # MLflow: one experiment per study name, one parent run per study.
    client = client_for(settings.tracking_uri)
    experiment_id = record.mlflow_experiment_id or get_or_create_experiment(client, space.name)
    parent_run_id = record.mlflow_parent_run_id
    if parent_run_id is None:
        parent_run_id = start_parent_run(client, experiment_id, study_id, space)
    else:
        client.update_run(parent_run_id, status="RUNNING")
    registry.update(
        study_id,
        status=RUNNING,
        started_at=record.started_at or _now(),
        finished_at=None,
        error=None,
        mlflow_experiment_id=experiment_id,
        mlflow_parent_run_id=parent_run_id,
        tune_path=str(tune_path),
        driver=_driver_id(),
    )

    status, error, checkpoints = FAILED, None, {}
    try:
        _init_ray(ray_address, space)
        tuner = _build_tuner(
            study_id, space, settings, experiment_id, parent_run_id, tune_path, resume, show_progress, seed_trials or [],
            log_path,
        )
        started = time.monotonic()
        results = tuner.fit()
        checkpoints = _checkpoints_by_trial(results)
        status, error = _outcome(space, settings, record.optuna_study_name, time.monotonic() - started)
    except KeyboardInterrupt:
        status, error = STOPPED, "interrupted"
    except StudyError as exc:
        append_log(log_path, f"study {study_id} failed: {exc}")
        registry.update(study_id, status=FAILED, finished_at=_now(), error=str(exc))
        client.set_tag(parent_run_id, "hpsearch.error", str(exc)[:5000])
        client.set_terminated(parent_run_id, status="FAILED")
        raise
    except Exception as exc:  # the study itself failed; keep the reason where people look
        logger.exception("study %s failed", study_id)
        status, error = FAILED, f"{type(exc).__name__}: {exc}"
    summary = _finish(
        study_id, space, settings, registry, client, parent_run_id, experiment_id, tune_path, status, error,
        checkpoints=checkpoints, register=register,
    )
    best = "" if summary.best_value is None else f"; best {space.metrics[0]} {summary.best_value:.4f} (trial {summary.best_trial})"
    append_log(log_path, f"study {study_id} {summary.status}: trials {summary.n_trials}, completed {summary.n_completed}, "
                         f"pruned {summary.n_pruned}, failed {summary.n_failed}{best}"
                         f"{'; ' + summary.error if summary.error else ''}")
    return summary


# -- Ray and Tune ----------------------------------------------------------------------------------------
def _configure_libraries() -> None:
    """Our progress lines are the study's voice: keep the libraries' banners out of the terminal.

    Tune snapshots its experiment state whenever a trial checkpoints (every epoch, with num_to_keep=1) and at
    least every TUNE_GLOBAL_CHECKPOINT_S (1 s here, 10 s by default), so that after a crash `resume` re-runs
    as little as possible; a small study's snapshot takes milliseconds, so Tune's warning about frequent
    snapshots is switched off."""
    import mlflow  # noqa: F401  (it sets its loggers up on import; quiet them after that)
    import optuna

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter obeys verbose=0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _init_ray(address: Optional[str], space) -> None:
    import ray

    if address:
        _check_reachable(address)  # in seconds; `ray.init` retries an unreachable address for minutes
    if ray.is_initialized():
        return
    # Workers import the user's own trainable modules from where the space and the command are.
    paths = [os.getcwd()]
    if space.source and os.path.exists(space.source):
        paths.append(str(Path(space.source).resolve().parent))
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING)
    # A driver launched as a Ray job (by the API service) already runs in the job's runtime env, which its
    # workers inherit; Ray refuses a second one that sets the same variables.
    if not os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
    if not address:
        # Embedded: always a fresh local instance, never a `ray start` cluster that happens to be running.
        ray.init(**kwargs, address="local", include_dashboard=False)
        return
    try:
        _use_token_if_available()
        ray.init(**kwargs, address=address)
    except Exception as exc:
        if _refused_token(exc):
            raise StudyError(
                f"the Ray cluster at {address} refused this driver: its authentication token is missing here or "
                f"is not the cluster's ({_first_sentence(exc)}); set RAY_AUTH_TOKEN to the head node's token "
                f"(`ray get-auth-token` prints it there) or copy the head's ~/.ray/auth_token to this machine"
            ) from None
        # Anything else (Ray or Python versions that differ from the cluster's, ...) is for the user to fix too.
        raise StudyError(
            f"cannot connect to the Ray cluster at {address}: {_first_line(exc)}; check the address and that the "
            f"head node is up"
        ) from None


def _use_token_if_available() -> None:
    """Present the cluster's token when this machine has one (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token) and RAY_AUTH_MODE does not say otherwise.

    Ray 2.60 turns token authentication on by itself for `ray start` and for `address="auto"`, but not for a
    driver given an explicit address (2.61 extends the default to all clusters): without this, a driver that
    holds the right token still connects without it and is refused after Ray's ~20 s of retries. The switch
    has to go through Ray's own helper, because Ray reads RAY_AUTH_MODE once, when it is imported."""
    try:
        from ray._private.authentication import authentication_token_setup as token_setup
    except ImportError:  # pragma: no cover - a Ray that moved it presents the token itself
        return
    # Its "token authentication is enabled, set RAY_AUTH_MODE=disabled to opt out" banner is for `ray start`.
    logging.getLogger(token_setup.__name__).setLevel(logging.ERROR)
    token_setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _refused_token(exc: BaseException) -> bool:
    """Ray says "no token was found" at once, or retries a refused one and then raises a ConnectionError
    whose cause carries the GCS's "InvalidAuthToken" answer."""
    from ray.exceptions import AuthenticationError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, AuthenticationError) or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _first_sentence(exc: BaseException) -> str:
    """The head of Ray's message (which never contains the token), without its paragraph of generic advice."""
    from ray.exceptions import AuthenticationError

    while exc is not None and not isinstance(exc, AuthenticationError):
        exc = exc.__cause__ or exc.__context__
    if exc is None:
        return "the cluster answered InvalidAuthToken"
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0].split(". ")[0].rstrip(".")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """`ray.init` retries an unreachable address for minutes; a TCP probe answers in seconds."""
    if address == "auto":
        return
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise StudyError(f"--ray-address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379 or ray-head:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise StudyError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check --ray-address / RAY_ADDRESS "
            f"and that the head node runs (`ray start --head`)"
        ) from None


def load_trainable(target: str) -> Callable:
    module_name, _, func_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _reporting_placement(train_fn: Callable):
    """Tune's trainable for `train_fn`, whose every result also says where the trial ran: the Ray node id
    (`node_id`) and the GPU ids Ray gave it (`gpu_ids`, e.g. "0" or "0,1"; "" without GPUs).

    Tune's own results name only the node's IP, which every node of one machine shares, and the GPU ids are
    known only inside the trial's worker; adding them next to Tune's auto-filled `node_ip` and `pid` keeps the
    trainables unaware of it. The class is local, so Ray ships it by value: workers need not import `service`."""
    import inspect

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


def _build_tuner(
    study_id, space, settings, experiment_id, parent_run_id, tune_path, resume, show_progress, seed_trials, log_path,
):
    from ray import tune

    from service._progress import StudyProgress
    from service._searcher import StudySearcher
    from service._tracking import MlflowTrialLogger
    from service.space import build_sampler, define_by_run

    trainable_fn = tune.with_resources(
        _reporting_placement(load_trainable(_trainable_target(space))),
        {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    )
    if resume:
        from ray.tune import Tuner

        if not Tuner.can_restore(str(tune_path)):
            raise StudyError(
                f"study {study_id} has no saved Tune state at {tune_path}; it cannot be resumed (submit it again)"
            )
        return Tuner.restore(str(tune_path), trainable=trainable_fn, resume_unfinished=True, resume_errored=False)

    metric, mode = space.metrics[0], space.modes[0]
    multi = len(space.metrics) > 1
    searcher = StudySearcher(
        max_epochs=space.budget.max_epochs,
        space=define_by_run(space),  # a picklable object: OptunaSearch pickles it into Tune's state
        metric=space.metrics if multi else metric,
        mode=space.modes if multi else mode,
        sampler=build_sampler(space),
        study_name=study_id,
        storage=_optuna_storage(settings.optuna_storage),
    )
    searcher.study.set_user_attr("hpsearch.study_id", study_id)
    searcher.study.set_user_attr("hpsearch.metrics", space.metrics)
    if seed_trials:
        searcher.study.add_trials(seed_trials)  # before the first ask: TPE starts from them
    tracker = MlflowTrialLogger(
        tracking_uri=settings.tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        study_id=study_id,
        optuna_storage=settings.optuna_storage,
        optuna_study_name=study_id,
        metric=space.metrics if multi else metric,
        mode=space.modes if multi else mode,
        max_epochs=space.budget.max_epochs,
        name_params=tuple(list(space.params)[:3]),
        # Plots on the parent run are redrawn at most this often while the study runs.
        report_interval_s=float(os.environ.get("HPSEARCH_REPORT_INTERVAL_S", "120")),
    )
    progress = StudyProgress(
        study_id=study_id,
        registry_url=settings.registry_url,
        metric=metric,
        mode=mode,
        all_metrics=space.metrics if multi else metric,
        max_epochs=space.budget.max_epochs,
        max_failed_trials=space.budget.max_failed_trials,
        total_trials=space.budget.trials,
        time_budget_s=space.budget.time_s,
        show=show_progress,
        optuna_storage=settings.optuna_storage,
        optuna_study_name=study_id,
        log_path=log_path,
    )
    tuner = tune.Tuner(
        trainable_fn,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=_scheduler(space, metric, mode),
            num_samples=space.budget.trials,
            max_concurrent_trials=space.budget.concurrency,
            time_budget_s=space.budget.time_s,
            trial_dirname_creator=trial_dirname,
            # Trials with the same resources run in the same worker process one after another, so each
            # pays torch's import and the data load once per worker, not once per trial.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=study_id,
            storage_path=str(tune_path.parent),
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[tracker, progress],
            stop=progress,
            verbose=0,
        ),
    )
    return tuner


def _scheduler(space, metric: str, mode: str):
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule

    s = space.scheduler
    if s.type == "asha":
        return AsyncHyperBandScheduler(
            time_attr="training_iteration",
            metric=metric,
            mode=mode,
            max_t=space.budget.max_epochs,
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
        )
    if s.type == "median":
        return MedianStoppingRule(
            time_attr="training_iteration",
            metric=metric,
            mode=mode,
            grace_period=s.grace_period,
            min_samples_required=s.min_samples_required,
        )
    return FIFOScheduler()


def _trainable_target(space) -> str:
    spec = space.trainable_spec
    return spec.target if spec is not None else space.trainable


def _optuna_storage(url: str):
    """Optuna's storage at `url`. On an empty database the first opening creates Optuna's tables; two drivers
    doing that at once collide (PostgreSQL: a duplicate `alembic_version` type), and the loser only has to
    open it again."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except (IntegrityError, ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))


def _engine_kwargs(url: str) -> dict:
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}


# -- After the run ---------------------------------------------------------------------------------------
def _outcome(space, settings: Settings, optuna_study_name: str, fit_seconds: float) -> tuple[str, Optional[str]]:
    """succeeded, failed or stopped, judged from the Optuna study after Tune returned."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=optuna_study_name, storage=_optuna_storage(settings.optuna_storage))
    trials = own_trials(study)
    n_failed = sum(t.state == TrialState.FAIL for t in trials)
    limit = space.budget.max_failed_trials
    if limit is not None and n_failed > limit:
        return FAILED, f"{n_failed} trials failed, more than max_failed_trials={limit}"
    finished = sum(t.state.is_finished() for t in trials)
    planned = space.budget.trials
    out_of_time = bool(space.budget.time_s) and fit_seconds >= space.budget.time_s * 0.98
    if finished < planned and not out_of_time and _grid_left(space, study):
        return STOPPED, f"stopped after {finished} of {planned} trials; `hpsearch resume {optuna_study_name}` continues it"
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return FAILED, "no trial completed"
    return SUCCEEDED, None


def _grid_left(space, study) -> bool:
    """False when a grid sampler has nothing left to try (then fewer trials than planned is success)."""
    if space.sampler.type != "grid":
        return True
    from optuna.samplers import GridSampler

    sampler = study.sampler
    return not (isinstance(sampler, GridSampler) and sampler.is_exhausted(study))


def _checkpoints_by_trial(results) -> dict[str, str]:
    """Tune trial id -> directory of the trial's last checkpoint."""
    found = {}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        if trial_id and result.checkpoint is not None:
            found[trial_id] = result.checkpoint.path
    return found


def reconcile_running_trials(optuna_storage: str, optuna_study_name: str) -> int:
    """Optuna trials left RUNNING by a dead or finished driver are told FAIL (Optuna's heartbeat does not
    cover ask/tell); returns how many. Only call when no driver can still tell them."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=optuna_study_name, storage=_optuna_storage(optuna_storage))
    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        study.set_user_attr(f"reconciled.{t.number}", "left running by an interrupted driver")
        try:
            study.tell(t.number, state=TrialState.FAIL)
            count += 1
        except Exception as exc:  # pragma: no cover - raced with a live tell
            logger.warning("could not reconcile trial %s: %s", t.number, exc)
    return count


def summarize(space, optuna_storage: str, optuna_study_name: str):
    """Counts by state and the best completed trial, from the Optuna study (the source of truth)."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=optuna_study_name, storage=_optuna_storage(optuna_storage))
    trials = own_trials(study)
    counts = {
        "n_trials": len(trials),
        "n_completed": sum(t.state == TrialState.COMPLETE for t in trials),
        "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "n_failed": sum(t.state == TrialState.FAIL for t in trials),
        "n_running": sum(t.state == TrialState.RUNNING for t in trials),
    }
    best = None
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if completed and len(space.metrics) == 1:
        pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        best = pick(completed, key=lambda t: t.value)
    return study, counts, best


def own_trials(study) -> list:
    """The study's own trials, without those a warm start copied in from an earlier study."""
    from service._warmstart import SOURCE_ATTR

    return [t for t in study.get_trials(deepcopy=False) if SOURCE_ATTR not in t.user_attrs]


def _finish(
    study_id, space, settings, registry, client, parent_run_id, experiment_id, tune_path, status, error,
    *, checkpoints: dict[str, str], register: Optional[str],
) -> StudySummary:
    from service._searcher import TUNE_TRIAL_ID_ATTR
    from service._tracking import TAG_PARETO, log_best_model, log_study_report, register_best_model, tag_trial_runs

    if not _optuna_study_exists(settings.optuna_storage, study_id):
        # The study failed before its first trial was asked for (the Optuna study is made then).
        return _finish_without_trials(study_id, space, settings, registry, client, parent_run_id, experiment_id,
                                      tune_path, status, error)
    if status != STOPPED:
        reconcile_running_trials(settings.optuna_storage, study_id)
    study, counts, best = summarize(space, settings.optuna_storage, study_id)
    best_value = best.value if best is not None else None
    best_params = dict(best.params) if best is not None else None

    # Parent run: the outcome, where the UI shows it.
    metric = space.metrics[0]
    client.set_tag(parent_run_id, "hpsearch.status", status)
    for key in ("n_trials", "n_completed", "n_pruned", "n_failed"):
        client.log_metric(parent_run_id, key, counts[key])
    if best is not None:
        client.log_metric(parent_run_id, f"best_{metric}", best_value)
        client.set_tag(parent_run_id, "hpsearch.best_trial", str(best.number))
        client.set_tag(parent_run_id, "hpsearch.best_params", json.dumps(best_params, sort_keys=True)[:5000])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "best.json"
            path.write_text(json.dumps({"value": best_value, "metric": metric, "trial": best.number, "params": best_params}, indent=2))
            client.log_artifact(parent_run_id, str(path))
        tag_trial_runs(client, experiment_id, study_id, [best.number], "hpsearch.best")
    pareto = None
    if len(space.metrics) > 1 and counts["n_completed"]:
        own = {t.number for t in own_trials(study)}
        front = [t for t in study.best_trials if t.number in own]
        pareto = [{"trial": t.number, "values": list(t.values), "params": dict(t.params)} for t in front]
        tag_trial_runs(client, experiment_id, study_id, [t.number for t in front], TAG_PARETO)
        client.set_tag(parent_run_id, "hpsearch.pareto_trials", ",".join(str(t.number) for t in front))
    registered = None
    checkpoint_dir = checkpoints.get(best.user_attrs.get(TUNE_TRIAL_ID_ATTR, "")) if best is not None else None
    if checkpoint_dir:
        log_best_model(client, parent_run_id, checkpoint_dir, space, best)
        if register:
            try:
                registered = register_best_model(settings.tracking_uri, parent_run_id, checkpoint_dir, register)
            except Exception as exc:  # noqa: BLE001 - the study's results stand; say why registering failed
                logger.warning("could not register the best model as %s: %s", register, exc)
                error = (error + "; " if error else "") + f"registering the best model failed: {exc}"
    elif register and best is not None:
        error = (error + "; " if error else "") + "no checkpoint of the best trial to register"
    log_study_report(client, parent_run_id, study, space.metrics)
    if error:
        client.set_tag(parent_run_id, "hpsearch.error", error[:5000])
    client.set_terminated(parent_run_id, status={SUCCEEDED: "FINISHED", STOPPED: "KILLED"}.get(status, "FAILED"))

    registry.update(
        study_id,
        status=status,
        finished_at=_now(),
        error=error,
        best_value=best_value,
        best_params=best_params,
        n_trials=counts["n_trials"],
        n_running=0 if status != STOPPED else counts["n_running"],
        n_completed=counts["n_completed"],
        n_pruned=counts["n_pruned"],
        n_failed=counts["n_failed"],
        registered_model=registered,
    )
    return StudySummary(
        study_id=study_id,
        name=space.name,
        status=status,
        best_value=best_value,
        best_params=best_params,
        best_trial=best.number if best is not None else None,
        metric=space.metric,
        mode=space.mode,
        n_trials=counts["n_trials"],
        n_completed=counts["n_completed"],
        n_pruned=counts["n_pruned"],
        n_failed=counts["n_failed"],
        mlflow_tracking_uri=settings.tracking_uri,
        mlflow_experiment_id=experiment_id,
        mlflow_parent_run_id=parent_run_id,
        optuna_storage=settings.optuna_storage,
        optuna_study_name=study_id,
        tune_path=str(tune_path),
        error=error,
        pareto_front=pareto,
        registered_model=registered,
    )


def _optuna_study_exists(storage_url: str, study_name: str) -> bool:
    storage = _optuna_storage(storage_url)
    try:
        storage.get_study_id_from_name(study_name)
        return True
    except KeyError:
        return False


def _finish_without_trials(
    study_id, space, settings, registry, client, parent_run_id, experiment_id, tune_path, status, error,
) -> StudySummary:
    status = FAILED if status == SUCCEEDED else status
    error = error or "the study ended before its first trial"
    client.set_tag(parent_run_id, "hpsearch.status", status)
    client.set_tag(parent_run_id, "hpsearch.error", error[:5000])
    client.set_terminated(parent_run_id, status="KILLED" if status == STOPPED else "FAILED")
    registry.update(study_id, status=status, finished_at=_now(), error=error, n_running=0)
    return StudySummary(
        study_id=study_id, name=space.name, status=status, best_value=None, best_params=None, best_trial=None,
        metric=space.metric, mode=space.mode, n_trials=0, n_completed=0, n_pruned=0, n_failed=0,
        mlflow_tracking_uri=settings.tracking_uri, mlflow_experiment_id=experiment_id,
        mlflow_parent_run_id=parent_run_id, optuna_storage=settings.optuna_storage, optuna_study_name=study_id,
        tune_path=str(tune_path), error=error,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def end_local_driver(record: StudyRecord) -> None:
    """SIGKILL the study's driver process on this machine (`hpsearch stop --force`)."""
    import signal

    host, _, pid = (record.driver or "").partition(":")
    if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def _driver_alive(record: StudyRecord) -> bool:
    """A study marked running whose local driver process is gone crashed; it may be resumed."""
    host, _, pid = (record.driver or "").partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return int(pid) != os.getpid()
