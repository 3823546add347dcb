"""Connect the driver to Ray: an embedded instance, or a cluster's head given by address (token auth on).

`ray.init` happens only here, called by the runner, so everything else imports in tests without a cluster.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Optional

from service._errors import StudyError
from service._sockets import tcp_listeners, unmapped
from service._telemetry import telemetry_env

logger = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Our progress lines are the study's voice: keep the libraries' banners out of the terminal. Ray's part
    (quiet_ray) is done before Ray starts; MLflow's and Optuna's here, once both are imported (each sets its
    loggers up as it is imported, which would undo what was set before)."""
    import mlflow  # noqa: F401
    import optuna

    quiet_ray()
    if os.environ.get("HPSEARCH_VERBOSE"):  # `hpsearch -v`: the libraries speak too
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # MLflow's requirement inference and model logging notes, and alembic's migrations (MLflow's tables on
    # a new store), are not for a study's user.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_ray() -> None:
    """Ray's and Tune's part of quiet_libraries: before Ray starts (its token banner comes with `ray.init`).

    Tune snapshots its experiment state whenever a trial checkpoints (every epoch) and at
    least every TUNE_GLOBAL_CHECKPOINT_S (1 s here, 10 s by default), so that after a crash `resume` re-runs
    as little as possible; a small study's snapshot takes milliseconds, so Tune's warning about frequent
    snapshots is switched off."""
    import ray  # noqa: F401  (its logging set-up on import resets the level of every logger under "ray")

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter obeys verbose=0
    # Tune's own per-trial result files (CSV, JSON, TensorBoard), written on its loop at every result: nothing
    # reads them, every result is in MLflow. Without them Tune's result views warn that they find no files.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # A result without the study's metric (a trial's last one after its own error, or a trainable that never
    # reports it) is judged by the study (service/_outcome.py), not refused by Tune's driver loop.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if os.environ.get("HPSEARCH_VERBOSE"):
        return
    # A trial whose worker was lost: the study's log says which, at which epoch and why, in one line each time
    # (service/_progress.py), and its MLflow run keeps Tune's whole error. Tune's traceback of it and its
    # closing list of the trials it gave up on only repeat that, as tracebacks and object names.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    tune_logger = logging.getLogger("ray.tune.tune")
    if _not_tunes_incomplete_trials_list not in tune_logger.filters:
        tune_logger.addFilter(_not_tunes_incomplete_trials_list)
    # Ray's "token authentication is enabled" banner: it is, for an embedded Ray too.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def _not_tunes_incomplete_trials_list(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Trials did not complete")


def connect(address: Optional[str], space_source: Optional[str] = None) -> None:
    """Start an embedded Ray (`address` None) or join the cluster at `address`; a no-op when connected.

    Workers import the user's own trainable modules from where the space file and the command are, so both
    folders go on the workers' PYTHONPATH."""
    import ray

    if address:
        check_reachable(address)  # in seconds; `ray.init` retries an unreachable address for minutes
    if ray.is_initialized():
        return
    paths = [os.getcwd()]
    if space_source and os.path.exists(space_source):
        paths.append(str(Path(space_source).resolve().parent))
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING)
    # A driver launched as a Ray job (by the API service) already runs in the job's runtime env, which its
    # workers inherit; Ray refuses a second one that sets the same variables. Workers on a cluster's nodes do
    # not inherit this process's environment: its telemetry choices go with the runtime env.
    if not os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
                                              **telemetry_env()}}
    if not address:
        _start_embedded(kwargs)
        return
    try:
        present_cluster_token()
        with loopback_node() if head_on_loopback_only(address) else nullcontext():
            ray.init(**kwargs, address=address)
    except Exception as exc:
        if refused_token(exc):
            raise StudyError(
                f"the Ray cluster at {address} refused this driver: its authentication token is missing here or "
                f"is not the cluster's ({_auth_sentence(exc)}); set RAY_AUTH_TOKEN to the head node's token "
                f"(`ray get-auth-token` prints it there) or copy the head's ~/.ray/auth_token to this machine"
            ) from None
        # Anything else (Ray or Python versions that differ from the cluster's, ...) is for the user to fix too.
        raise StudyError(
            f"cannot connect to the Ray cluster at {address}: {first_line(exc)}; check the address and that the "
            f"head node is up"
        ) from None


def _start_embedded(kwargs: dict) -> None:
    """A fresh local Ray instance, never a `ray start` cluster that happens to be running. Starting it can fail
    for a moment (a port taken between Ray choosing it and binding it, a slow disk under /tmp): one more try,
    then one line naming the cause."""
    import ray

    from service._retry import retry

    def start() -> None:
        if ray.is_initialized():
            ray.shutdown()
        with loopback_node():
            ray.init(**kwargs, address="local", include_dashboard=False)

    try:
        retry(start, on=(Exception,), attempts=2, first_pause_s=1.0, what="starting an embedded Ray")
        atexit.register(_end_autoscaler_monitor)  # runs before Ray's own exit hook, registered earlier
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here; all end the same way for the user
        raise StudyError(
            f"could not start an embedded Ray on this machine: {first_line(exc)}; check free space and permissions "
            f"under {os.environ.get('RAY_TMPDIR') or '/tmp'} (RAY_TMPDIR moves it) and that no firewall or "
            f"container limit blocks local ports, or run on a cluster with --ray-address"
        ) from None


def _end_autoscaler_monitor() -> None:
    """End the embedded Ray's autoscaler monitor at once. Ray's shutdown sends each of its processes SIGTERM and
    waits up to a second for it; the monitor (which has nothing to scale on one machine) is the one that never
    exits in that second, so every study's exit paid it in full."""
    import ray
    from ray._private import ray_constants

    node = getattr(ray._private.worker, "_global_node", None)
    for info in (node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []) if node is not None else []):
        if info.process.poll() is None:
            info.process.kill()
            info.process.wait(timeout=5)


# Ray 2.60 binds its gRPC servers (GCS, raylet, object manager, every worker, the dashboard agent) and its
# metrics exporters to every interface unless the node's address is loopback, and it replaces a loopback address
# (`_node_ip_address="127.0.0.1"` included) by the machine's own unless multi-node clusters are switched off, as
# they are by default on macOS and Windows. This variable switches them off on Linux too.
SINGLE_MACHINE_RAY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def loopback_node():
    """While it lasts, a Ray node started by this process takes 127.0.0.1 as its address, so every listener of
    an embedded Ray stays on loopback (tests/test_security_e2e.py lists them during a study).

    The second use of a private Ray name in hpsearch, checked against Ray 2.60.0 (tests/test_ray.py fails when it
    moves): Ray reads the variable once, when it is imported, into `ray_constants.ENABLE_RAY_CLUSTER`, so the
    constant is set too. The node's processes read the variable from the environment they inherit. Both are put
    back afterwards: a later driver of a real cluster in this process must find the machine's address again."""
    from ray._private import ray_constants

    saved_env, saved_constant = os.environ.get(SINGLE_MACHINE_RAY), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_RAY] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_RAY, None)
        else:
            os.environ[SINGLE_MACHINE_RAY] = saved_env


def head_on_loopback_only(address: str) -> bool:
    """The head at `address` is on 127.0.0.1 of this machine and its GCS listens on loopback itself, not
    through a bind to every interface: a cluster whose nodes all run on loopback (scripts/local-cluster,
    scripts/cluster/ray-start-loopback). Ray would swap 127.0.0.1 for the machine's address and miss such a
    head, or reach whoever else listens on the machine's address at that port, so it is joined with
    `loopback_node`. Read from the kernel's socket table, not by probing: nobody else can hold 127.0.0.1:PORT
    while the head does, whereas the machine's address at that port is free for anyone to take."""
    host, port = _host_port(address)
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return False
    # 127.0.0.1 itself, where the driver will connect: another user's listener on ::1 or 127.0.0.2 beside a
    # head bound to every interface must not switch its drivers to loopback.
    return any(p == int(port) and unmapped(a) == "127.0.0.1" for a, p in tcp_listeners().values())


def present_cluster_token() -> None:
    """Present the cluster's token when this machine has one (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token) and RAY_AUTH_MODE does not say otherwise.

    The one use of a private Ray API in hpsearch, checked against Ray 2.60.0 (tests/test_ray.py fails when it
    moves). Ray 2.60 turns token authentication on by itself for `ray start` and for `address="auto"`, but not
    for a driver given an explicit address (2.61 extends the default to every cluster): without this, a driver
    that holds the right token connects without it and is refused after Ray's ~20 s of retries. Setting
    RAY_AUTH_MODE ourselves is not enough, because Ray reads it once, when it is imported; Ray's own helper
    also refreshes its cached config."""
    from ray._private.authentication import authentication_token_setup as token_setup

    # Its "token authentication is enabled, set RAY_AUTH_MODE=disabled to opt out" banner is for `ray start`.
    logging.getLogger(token_setup.__name__).setLevel(logging.ERROR)
    token_setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def refused_token(exc: BaseException) -> bool:
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


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _auth_sentence(exc: BaseException) -> str:
    """The head of Ray's message (which never contains the token), without its paragraph of generic advice."""
    from ray.exceptions import AuthenticationError

    while exc is not None and not isinstance(exc, AuthenticationError):
        exc = exc.__cause__ or exc.__context__
    if exc is None:
        return "the cluster answered InvalidAuthToken"
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0].split(". ")[0].rstrip(".")


def _host_port(address: str) -> tuple[str, str]:
    """("ray-head", "6379") of "ray-head:6379", "ray://ray-head:6379/" and the like ("" for a missing part)."""
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    return host, port


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """`ray.init` retries an unreachable address for minutes; a TCP probe answers in seconds."""
    if address == "auto":
        return
    host, port = _host_port(address)
    if not host or not port.isdigit():
        raise StudyError(f"--ray-address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379 or ray-head:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise StudyError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check --ray-address / RAY_ADDRESS "
            f"and that the head node runs (`ray start --head`)"
        ) from None
