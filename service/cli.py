"""The `hpsearch` command. Commands parse, call one service function, and print.

Nothing heavy is imported at start-up: Ray, torch and MLflow load only inside the commands that run studies,
so `hpsearch --help` and `hpsearch validate` answer at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Iterator, Optional

import click

EXIT_STUDY_FAILED = 1
EXIT_USER_ERROR = 2


class UserError(click.ClickException):
    """A mistake the user can fix: one line on stderr, exit code 2, no traceback."""

    exit_code = EXIT_USER_ERROR


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the service's user-facing exceptions into UserError."""
    from service.space import SpaceError

    try:
        yield
    except SpaceError as exc:
        # A file's errors come together (SpaceError.errors); each prints as its own "Error: file:line: ..." line.
        raise UserError("\nError: ".join(exc.lines())) from None
    except _study_errors() as exc:
        raise UserError(str(exc)) from None


def _study_errors() -> tuple:
    from service._client import ServerUserError
    from service._registry import RegistryUnavailable, StudyNotFound
    from service._runner import StudyError
    from service._studies import StudyConflict

    return (StudyError, StudyNotFound, RegistryUnavailable, StudyConflict, ServerUserError)


def _settings(home: Optional[str], tracking_uri: Optional[str]):
    from service._settings import resolve_settings

    return resolve_settings(home=home, tracking_uri=tracking_uri)


home_option = click.option(
    "--home",
    envvar="HPSEARCH_HOME",
    type=click.Path(file_okay=False),
    help="State directory (registry, Optuna storage, Tune checkpoints). Env: HPSEARCH_HOME. Default: ~/.hpsearch.",
)
tracking_option = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI. Env: MLFLOW_TRACKING_URI. Default: sqlite:///mlflow.db in this directory.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout, for scripts.")
server_option = click.option(
    "--server",
    envvar="HPSEARCH_SERVER",
    help="URL of a cluster's hpsearch service (token from HPSEARCH_TOKEN); without it, the local registry. "
         "Env: HPSEARCH_SERVER.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hpsearch")
def main() -> None:
    """Hyperparameter search for PyTorch: a YAML space in, a study in MLflow out.

    \b
    hpsearch validate search_spaces/digits_cnn.yaml   check a space and preview samples
    hpsearch submit search_spaces/digits_cnn.yaml     run the study (embedded Ray)
    mlflow ui                                          compare its trials
    """


@main.command()
@click.argument("space_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the space, e.g. --set budget.trials=5 (repeatable).")
@click.option("--samples", default=3, show_default=True, type=click.IntRange(0, 50),
              help="How many sampled configurations to preview.")
def validate(space_file: str, overrides: tuple[str, ...], samples: int) -> None:
    """Check SPACE_FILE and preview its parameters and a few sampled configurations."""
    from service.space import load_space, preview

    with _user_errors():
        space = load_space(space_file, overrides)
        click.echo(preview(space, n=samples))


@main.command()
def schema() -> None:
    """Print the JSON Schema of the space file format (for editor completion)."""
    from service.space import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@click.argument("space_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the space, e.g. --set budget.trials=5 (repeatable).")
@server_option
@click.option("--wait", is_flag=True, help="With --server: follow the study to its end, as a local study runs.")
@tracking_option
@home_option
@click.option("--ray-address", envvar="RAY_ADDRESS",
              help="Run the trials on this Ray cluster instead of an embedded one. Env: RAY_ADDRESS.")
@click.option("--quiet", "-q", is_flag=True, help="No per-trial progress on stderr.")
@click.option("--register", metavar="NAME",
              help="Register the best trial's model in the MLflow Model Registry under NAME (built-in trainables).")
@click.option("--warm-start", metavar="STUDY_ID",
              help="Seed the new study with the finished trials of an earlier one whose space is compatible.")
@json_option
def submit(space_file, overrides, server, wait, tracking_uri, home, ray_address, quiet, register, warm_start, as_json) -> None:
    """Validate SPACE_FILE and run the study; progress goes to stderr, the result to stdout.

    With --server (or HPSEARCH_SERVER) the study goes to the hpsearch service of a cluster: this prints its
    id at once, or follows it to the end with --wait.
    """
    from service.space import load_space

    if server:
        with _user_errors():
            # The data files named in the space are the cluster's: the driver checks them where it runs.
            space = load_space(space_file, overrides, check_data=False)
            client = _client(server)
            study = client.submit(space.text, os.path.basename(space_file), list(space.overrides), warm_start, register)
            if not wait:
                click.echo(json.dumps(study, default=str) if as_json else study["id"])
                if not as_json:
                    click.echo(f"follow it: hpsearch logs {study['id']} --follow   (or hpsearch status {study['id']})",
                               err=True)
                return
            click.echo(f"study {study['id']} submitted to {client.server}", err=True)
            summary = _follow(client.status, client.logs, study["id"], quiet)
        _print_summary(summary, as_json)
        return
    with _user_errors():
        space = load_space(space_file, overrides)
        settings = _settings(home, tracking_uri)
        settings.home.mkdir(parents=True, exist_ok=True)
        from service._runner import submit_study

        with _stdout_to_stderr(as_json):
            summary = submit_study(
                space, settings, show_progress=not quiet, ray_address=ray_address, register=register,
                warm_start=warm_start,
            )
    _print_summary(summary.to_dict(), as_json)


@main.command()
@click.argument("study_id")
@server_option
@click.option("--wait", is_flag=True, help="With --server: follow the resumed study to its end.")
@tracking_option
@home_option
@click.option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster to resume on. Env: RAY_ADDRESS.")
@click.option("--quiet", "-q", is_flag=True, help="No per-trial progress on stderr.")
@click.option("--register", metavar="NAME", help="Register the best model under NAME when the study ends.")
@json_option
def resume(study_id, server, wait, tracking_uri, home, ray_address, quiet, register, as_json) -> None:
    """Continue a stopped or crashed study without re-running its finished trials."""
    if server:
        with _user_errors():
            client = _client(server)
            study = client.resume(study_id)
            if not wait:
                click.echo(json.dumps(study, default=str) if as_json else f"study {study['id']}: resumed ({study['status']})")
                return
            summary = _follow(client.status, client.logs, study["id"], quiet)
        _print_summary(summary, as_json)
        return
    with _user_errors():
        settings = _settings(home, tracking_uri)
        from service._runner import resume_study

        with _stdout_to_stderr(as_json):
            summary = resume_study(study_id, settings, show_progress=not quiet, ray_address=ray_address, register=register)
    _print_summary(summary.to_dict(), as_json)


@main.command()
@click.option("--study", "study_id", required=True, help="Id of a study recorded in the registry.")
@home_option
@click.option("--ray-address", envvar="RAY_ADDRESS",
              help="Ray cluster to run on (a Ray job's driver finds it in RAY_ADDRESS). Env: RAY_ADDRESS.")
@click.option("--quiet", "-q", is_flag=True, help="No per-trial progress on stderr.")
def run(study_id, home, ray_address, quiet) -> None:
    """Drive a study recorded in the registry: what the API service launches on the cluster as a Ray job.

    The space and the stores come from the study's registry row (HPSEARCH_REGISTRY_URL); a study that ran
    before continues from its saved state.
    """
    with _user_errors():
        from service._runner import run_registered_study

        summary = run_registered_study(study_id, _settings(home, None), show_progress=not quiet, ray_address=ray_address)
    _print_summary(summary.to_dict(), False)


@main.command(name="list")
@server_option
@home_option
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "stopped"]),
              help="Only studies in this state.")
@json_option
def list_studies(server, home, status, as_json) -> None:
    """List studies, newest first (the server's with --server, else the local registry's)."""
    with _user_errors():
        if server:
            studies = _client(server).list(status=status)
        else:
            from service._registry import Registry
            from service._studies import study_dict

            studies = [study_dict(r) for r in Registry(_settings(home, None).registry_url).list(status=status)]
    if as_json:
        click.echo(json.dumps(studies, default=str))
        return
    if not studies:
        click.echo("no studies yet: hpsearch submit SPACE_FILE starts one")
        return
    for r in studies:
        best = "-" if r["best_value"] is None else f"{r['best_value']:.4f}"
        click.echo(
            f"{r['id']:<44} {r['status']:<10} trials {r['n_trials']:>3} (completed {r['n_completed']}, pruned "
            f"{r['n_pruned']}, failed {r['n_failed']})  best {','.join(r['metrics'])} {best}"
        )


@main.command()
@click.argument("study_id")
@server_option
@home_option
@json_option
def status(study_id, server, home, as_json) -> None:
    """Show one study: state, counts, best value, where its records are, and its trials."""
    with _user_errors():
        if server:
            data = _client(server).status(study_id)
        else:
            from service._studies import status_dict

            data = status_dict(_local_registry(home).find_or_raise_by_id(study_id))
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    for key in ("id", "status", "created_at", "started_at", "finished_at", "n_trials", "n_running", "n_completed",
                "n_pruned", "n_failed", "metrics", "best_value", "best_params", "error", "mlflow_tracking_uri",
                "mlflow_experiment_id", "mlflow_parent_run_id", "optuna_storage", "optuna_study_name", "tune_path",
                "ray_job_id", "registered_model"):
        if data.get(key) is not None or key in ("status", "best_value"):
            click.echo(f"{key:<22} {data.get(key)}")
    if data.get("stop_requested_at") and data["status"] in ("queued", "running"):
        click.echo(f"{'stop_requested_at':<22} {data['stop_requested_at']}")
    click.echo(_trial_table(data.get("trials") or [], data.get("metrics") or []))


@main.command()
@click.argument("study_id")
@server_option
@home_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the study ends.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per read ({study_id, text, offset, finished, status}); with --follow, one per line.")
def logs(study_id, server, home, follow, as_json) -> None:
    """Print a study's event log (trials started and ended, stops, resumes, the outcome)."""
    import time

    with _user_errors():
        if server:
            client = _client(server)
            read = client.logs
            resolved = client.status(study_id)["id"]
        else:
            from service._studies import logs_dict

            settings = _settings(home, None)
            registry = _local_registry(home)
            resolved = registry.find_or_raise_by_id(study_id).id

            def read(sid, offset=0):
                return logs_dict(registry.find_or_raise_by_id(sid), settings, offset)

        offset = 0
        while True:
            page = read(resolved, offset)
            if as_json:
                if page["text"] or not follow or page["finished"]:
                    click.echo(json.dumps(page))
            elif page["text"]:
                click.echo(page["text"], nl=False)
            offset = page["offset"]
            if not follow or (page["finished"] and not page["text"]):
                break
            time.sleep(1.0)


@main.command()
@click.argument("study_id")
@server_option
@home_option
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the driver has ended the running trials and marked the study stopped.")
@click.option("--timeout", default=300, show_default=True, type=click.IntRange(1), help="Seconds to wait at most.")
@click.option("--force", is_flag=True,
              help="End the driver instead of asking it (for a driver that does not answer); the study then "
                   "resumes from Tune's last snapshot, as after a crash.")
@json_option
def stop(study_id, server, home, wait, timeout, force, as_json) -> None:
    """Stop a study gracefully: running trials end (keeping their last checkpoint), no new ones start, and the
    study is marked stopped; `hpsearch resume ID` continues it."""
    import time

    with _user_errors():
        if server:
            client = _client(server)
            study = client.stop(study_id, force=force)
            fetch = client.status
        else:
            from service._runner import _driver_alive, end_local_driver
            from service._studies import request_stop, study_dict

            registry = _local_registry(home)
            record = registry.find_or_raise_by_id(study_id)
            study = study_dict(request_stop(registry, record, _settings(home, None), driver_alive=_driver_alive,
                                            force=force, end_driver=end_local_driver))

            def fetch(sid):
                return study_dict(registry.find_or_raise_by_id(sid))

        deadline = time.monotonic() + timeout
        while wait and study["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise UserError(
                    f"study {study['id']} was asked to stop but is still {study['status']} after {timeout}s; its "
                    f"driver stops at the end of its current step (`hpsearch logs {study['id']}` shows it)"
                )
            time.sleep(1.0)
            study = fetch(study["id"])
    if as_json:
        click.echo(json.dumps(study, default=str))
    else:
        state = study["status"] if study["status"] not in ("queued", "running") else "stop requested"
        click.echo(f"study {study['id']}: {state}")


@main.command()
@click.argument("study_id")
@server_option
@home_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the best configuration as a space-compatible `fixed:` block to this file.")
@json_option
def best(study_id, server, home, output, as_json) -> None:
    """The best configuration of a study."""
    import yaml

    with _user_errors():
        if server:
            data = _client(server).best(study_id)
        else:
            from service._studies import best_dict

            data = best_dict(_local_registry(home).find_or_raise_by_id(study_id))
    if output:
        with open(output, "w") as fh:
            fh.write(data["fixed_block"])
    if as_json:
        click.echo(json.dumps({k: data[k] for k in ("study_id", "best_value", "best_params")}))
    else:
        metric = data["metric"] if isinstance(data["metric"], str) else ",".join(data["metric"])
        click.echo(f"best {metric} = {data['best_value']}")
        click.echo(yaml.safe_dump(data["best_params"], sort_keys=False).rstrip())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HPSEARCH_API_HOST",
              help="Address to listen on (0.0.0.0 inside a container). Env: HPSEARCH_API_HOST.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), envvar="HPSEARCH_API_PORT",
              help="Port to listen on. Env: HPSEARCH_API_PORT.")
@click.option("--ray-dashboard", envvar="HPSEARCH_RAY_DASHBOARD", default="http://127.0.0.1:8265", show_default=True,
              help="The Ray head's dashboard, which serves the Jobs API the drivers are launched through. "
                   "Env: HPSEARCH_RAY_DASHBOARD.")
@home_option
@tracking_option
def serve(host, port, ray_dashboard, home, tracking_uri) -> None:
    """Run the hpsearch API service (what `docker compose up` starts as `api`).

    \b
    Env: HPSEARCH_TOKEN (required: the bearer token callers present), HPSEARCH_REGISTRY_URL and
    HPSEARCH_OPTUNA_STORAGE (PostgreSQL), MLFLOW_TRACKING_URI (the MLflow server as the Ray nodes reach it),
    HPSEARCH_HOME (storage shared by all Ray nodes), RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (the Ray cluster's
    token), HPSEARCH_DATA_DIR (where relative data paths of a space point on the cluster).
    """
    from service._serve import serve_api

    with _user_errors():
        serve_api(host=host, port=port, ray_dashboard=ray_dashboard, settings=_settings(home, tracking_uri))


@main.command()
@tracking_option
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="Port of the UI.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the UI listens on.")
def ui(tracking_uri, port, host) -> None:
    """Open the MLflow UI on the configured store (or print the server's URL)."""
    settings = _settings(None, tracking_uri)
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        click.echo(f"the MLflow server is at {uri}")
        return
    click.echo(f"MLflow UI for {uri} at http://{host}:{port}/ (Ctrl-C stops it)", err=True)
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", host, "--port", str(port)])


def _local_registry(home: Optional[str]):
    from service._registry import Registry

    return Registry(_settings(home, None).registry_url)


def _client(server: str):
    from service._client import ApiClient

    return ApiClient(server, os.environ.get("HPSEARCH_TOKEN"))


def _follow(fetch_status, fetch_logs, study_id: str, quiet: bool) -> dict:
    """Print the study's new log lines on stderr until it ends; its summary then."""
    import time

    offset = 0
    while True:
        page = fetch_logs(study_id, offset)
        if page["text"] and not quiet:
            click.echo(page["text"], nl=False, err=True)
        offset = page["offset"]
        if page["finished"]:
            data = fetch_status(study_id)
            if data["status"] not in ("queued", "running"):
                rest = fetch_logs(study_id, offset)
                if rest["text"] and not quiet:
                    click.echo(rest["text"], nl=False, err=True)
                return data["summary"]
        time.sleep(1.0)


def _trial_table(trials: list[dict], metrics: list[str]) -> str:
    if not trials:
        return "no trials yet"
    header = f"{'trial':>5}  {'state':<9} {'epochs':>6}  {','.join(metrics):>12}  parameters"
    lines = [header]
    for t in trials:
        values = "-" if not t["values"] else ",".join(f"{v:.4f}" if v is not None else "-" for v in t["values"])
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        lines.append(f"{t['number']:>5}  {t['state']:<9} {t['epochs']:>6}  {values:>12}  {params}")
    return "\n".join(lines)


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """With --json, stdout must hold only the summary: anything Ray or a library prints goes to stderr."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = real_stdout
        os.dup2(saved, 1)
        os.close(saved)


def _print_summary(summary: dict, as_json: bool) -> None:
    """The outcome of a study (StudySummary.to_dict(), or the server's `summary` with the same keys)."""
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        click.echo(f"study {summary['study_id']}: {summary['status']}")
        click.echo(
            f"trials {summary['n_trials']}: completed {summary['n_completed']}, pruned {summary['n_pruned']}, "
            f"failed {summary['n_failed']}"
        )
        for point in summary.get("pareto_front") or []:
            values = ", ".join(f"{m}={v:.4g}" for m, v in zip(summary["metric"], point["values"]))
            click.echo(f"pareto trial {point['trial']}: {values}")
        if summary.get("registered_model"):
            click.echo(f"registered model: {summary['registered_model']}")
        if summary["best_value"] is not None:
            click.echo(f"best {summary['metric']} = {summary['best_value']:.4f} (trial {summary['best_trial']})")
            for key, value in (summary["best_params"] or {}).items():
                click.echo(f"  {key}: {value}")
        if summary.get("error"):
            click.echo(f"note: {summary['error']}")
        if summary.get("mlflow_experiment_id"):
            click.echo(_ui_hint(summary))
    if summary["status"] != "succeeded":
        sys.exit(EXIT_STUDY_FAILED)


def _ui_hint(summary: dict) -> str:
    # A cluster's service names the UI its users open (its drivers may reach MLflow by an inner name).
    uri = summary.get("mlflow_ui_url") or summary["mlflow_tracking_uri"]
    # The experiment's runs list: the study is one parent row there, its trials nested under it.
    url_path = f"#/experiments/{summary['mlflow_experiment_id']}/runs"
    if uri.startswith(("http://", "https://")):
        return f"compare the trials in MLflow: {uri.rstrip('/')}/{url_path}"
    return f"compare the trials in MLflow: hpsearch ui --tracking-uri {uri}  then open http://127.0.0.1:5000/{url_path}"


if __name__ == "__main__":  # pragma: no cover
    main()
