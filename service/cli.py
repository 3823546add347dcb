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
        raise UserError(str(exc)) from None
    except _study_errors() as exc:
        raise UserError(str(exc)) from None


def _study_errors() -> tuple:
    from service._registry import RegistryUnavailable, StudyNotFound
    from service._runner import StudyError

    return (StudyError, StudyNotFound, RegistryUnavailable)


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
def submit(space_file, overrides, tracking_uri, home, ray_address, quiet, register, warm_start, as_json) -> None:
    """Validate SPACE_FILE and run the study; progress goes to stderr, the result to stdout."""
    from service.space import load_space

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
    _print_summary(summary, as_json)


@main.command()
@click.argument("study_id")
@tracking_option
@home_option
@click.option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster to resume on. Env: RAY_ADDRESS.")
@click.option("--quiet", "-q", is_flag=True, help="No per-trial progress on stderr.")
@click.option("--register", metavar="NAME", help="Register the best model under NAME when the study ends.")
@json_option
def resume(study_id, tracking_uri, home, ray_address, quiet, register, as_json) -> None:
    """Continue a stopped or crashed study without re-running its finished trials."""
    with _user_errors():
        settings = _settings(home, tracking_uri)
        from service._runner import resume_study

        with _stdout_to_stderr(as_json):
            summary = resume_study(study_id, settings, show_progress=not quiet, ray_address=ray_address, register=register)
    _print_summary(summary, as_json)


@main.command(name="list")
@home_option
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "stopped"]),
              help="Only studies in this state.")
@json_option
def list_studies(home, status, as_json) -> None:
    """List studies in the registry, newest first."""
    from service._registry import Registry

    with _user_errors():
        records = Registry(_settings(home, None).registry_url).list(status=status)
    if as_json:
        click.echo(json.dumps([_record_dict(r) for r in records], default=str))
        return
    if not records:
        click.echo("no studies yet: hpsearch submit SPACE_FILE starts one")
        return
    for r in records:
        best = "-" if r.best_value is None else f"{r.best_value:.4f}"
        click.echo(
            f"{r.id:<44} {r.status:<10} trials {r.n_trials:>3} (completed {r.n_completed}, pruned {r.n_pruned}, "
            f"failed {r.n_failed})  best {','.join(r.metrics)} {best}"
        )


@main.command()
@click.argument("study_id")
@home_option
@json_option
def status(study_id, home, as_json) -> None:
    """Show one study: state, counts, best value and where its records are."""
    from service._registry import Registry

    with _user_errors():
        record = Registry(_settings(home, None).registry_url).find_or_raise_by_id(study_id)
    data = _record_dict(record)
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    for key in ("id", "status", "created_at", "started_at", "finished_at", "n_trials", "n_running", "n_completed",
                "n_pruned", "n_failed", "metrics", "best_value", "best_params", "error", "mlflow_tracking_uri",
                "mlflow_experiment_id", "mlflow_parent_run_id", "optuna_storage", "optuna_study_name", "tune_path"):
        click.echo(f"{key:<22} {data.get(key)}")


@main.command()
@click.argument("study_id")
@home_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the best configuration as a space-compatible `fixed:` block to this file.")
@json_option
def best(study_id, home, output, as_json) -> None:
    """The best configuration of a study."""
    import yaml

    from service._registry import Registry

    with _user_errors():
        record = Registry(_settings(home, None).registry_url).find_or_raise_by_id(study_id)
    if record.best_params is None:
        raise UserError(f"study {record.id} has no completed trial yet (status {record.status})")
    if output:
        with open(output, "w") as fh:
            fh.write(f"# best of study {record.id}: {','.join(record.metrics)} = {record.best_value}\n")
            yaml.safe_dump({"fixed": record.best_params}, fh, sort_keys=False)
    if as_json:
        click.echo(json.dumps({"study_id": record.id, "best_value": record.best_value, "best_params": record.best_params}))
    else:
        click.echo(f"best {','.join(record.metrics)} = {record.best_value}")
        click.echo(yaml.safe_dump(record.best_params, sort_keys=False).rstrip())


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


def _record_dict(record) -> dict:
    from dataclasses import asdict

    data = asdict(record)
    data.pop("space_text", None)
    return data


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


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict(), default=str))
    else:
        click.echo(f"study {summary.study_id}: {summary.status}")
        click.echo(
            f"trials {summary.n_trials}: completed {summary.n_completed}, pruned {summary.n_pruned}, failed {summary.n_failed}"
        )
        for point in summary.pareto_front or []:
            values = ", ".join(f"{m}={v:.4g}" for m, v in zip(summary.metric, point["values"]))
            click.echo(f"pareto trial {point['trial']}: {values}")
        if summary.registered_model:
            click.echo(f"registered model: {summary.registered_model}")
        if summary.best_value is not None:
            click.echo(f"best {summary.metric} = {summary.best_value:.4f} (trial {summary.best_trial})")
            for key, value in (summary.best_params or {}).items():
                click.echo(f"  {key}: {value}")
        if summary.error:
            click.echo(f"note: {summary.error}")
        click.echo(_ui_hint(summary))
    if summary.status != "succeeded":
        sys.exit(EXIT_STUDY_FAILED)


def _ui_hint(summary) -> str:
    uri = summary.mlflow_tracking_uri
    # The experiment's runs list: the study is one parent row there, its trials nested under it.
    url_path = f"#/experiments/{summary.mlflow_experiment_id}/runs"
    if uri.startswith(("http://", "https://")):
        return f"compare the trials in MLflow: {uri.rstrip('/')}/{url_path}"
    return f"compare the trials in MLflow: hpsearch ui --tracking-uri {uri}  then open http://127.0.0.1:5000/{url_path}"


if __name__ == "__main__":  # pragma: no cover
    main()
