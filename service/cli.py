"""The `hpsearch` command. Commands parse, call one service function, and print.

Nothing heavy is imported at start-up: Ray, torch and MLflow load only inside the commands that run studies,
so `hpsearch --help` and `hpsearch validate` answer at once.
"""

from __future__ import annotations

import json
import os
import sys

import click

from service._cli_common import (
    EXIT_STUDY_FAILED,
    UserError,
    answer,
    echo_err,
    home_option,
    json_option,
    print_summary,
    run_then_exit,
    server_option,
    settings_for,
    stdout_to_stderr,
    studies_for,
    tracking_option,
    user_errors,
)
from service._states import ACTIVE_STATUSES, StudyStatus
from service._telemetry import turn_off_library_telemetry

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hpsearch")
@click.option("-v", "--verbose", is_flag=True, envvar="HPSEARCH_VERBOSE",
              help="Let Ray, Tune, MLflow and Optuna print their own messages too. Env: HPSEARCH_VERBOSE.")
def main(verbose: bool) -> None:
    """Hyperparameter search for PyTorch: a YAML space in, a study in MLflow out.

    \b
    hpsearch validate search_spaces/digits_cnn.yaml   check a space and preview samples
    hpsearch submit search_spaces/digits_cnn.yaml     run the study (embedded Ray)
    hpsearch ui                                        compare its trials in the MLflow UI
    """
    if verbose:
        os.environ["HPSEARCH_VERBOSE"] = "1"
    # What hpsearch writes — the state directory, study logs, checkpoints, secrets of a local cluster — is
    # the user's alone: folders 0700, files 0600 (a study's log can name its data and its params).
    os.umask(0o077)


@main.command()
@click.argument("space_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the space, e.g. --set budget.trials=5 (repeatable).")
@click.option("--samples", default=3, show_default=True, type=click.IntRange(0, 50),
              help="How many sampled configurations to preview.")
def validate(space_file: str, overrides: tuple[str, ...], samples: int) -> None:
    """Check SPACE_FILE and preview its parameters and a few sampled configurations."""
    from service.space import load_space, preview

    with user_errors():
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
    from service._studies import summary_when_done
    from service.space import load_space

    with user_errors():
        # The data files named in a space sent to a cluster are the cluster's: its driver checks them there.
        space = load_space(space_file, overrides, check_data=not server)
        studies = studies_for(server, home, tracking_uri, ray_address=ray_address, quiet=quiet)
        with stdout_to_stderr(as_json):
            study = studies.submit(space, warm_start=warm_start, register=register)
        if study["status"] in ACTIVE_STATUSES and not wait:  # sent to a cluster: its id is the answer
            click.echo(json.dumps(study, default=str) if as_json else study["id"])
            if not as_json:
                click.echo(f"follow it: hpsearch logs {study['id']} --follow   (or hpsearch status {study['id']})",
                           err=True)
            return
        summary = summary_when_done(studies, study, echo=None if quiet else echo_err)
    print_summary(summary, as_json)


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
    from service._studies import summary_when_done

    with user_errors():
        studies = studies_for(server, home, tracking_uri, ray_address=ray_address, quiet=quiet)
        with stdout_to_stderr(as_json):
            study = studies.resume(study_id, register=register)
        if study["status"] in ACTIVE_STATUSES and not wait:
            click.echo(json.dumps(study, default=str) if as_json else f"study {study['id']}: resumed ({study['status']})")
            return
        summary = summary_when_done(studies, study, echo=None if quiet else echo_err)
    print_summary(summary, as_json)


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
    with user_errors():
        from service._runner import run_registered_study

        summary = run_registered_study(study_id, settings_for(home, None), show_progress=not quiet, ray_address=ray_address)
    print_summary(summary.to_dict(), False)


@main.command(name="list")
@server_option
@home_option
@click.option("--status", type=click.Choice([s.value for s in StudyStatus]), help="Only studies in this state.")
@json_option
def list_studies(server, home, status, as_json) -> None:
    """List studies, newest first (the server's with --server, else the local registry's)."""
    from service._render import study_list_text

    with user_errors():
        # One JSON object, as every --json answer (and the API's GET /studies): {"studies": [...]}.
        answer({"studies": studies_for(server, home).list(status=status)}, as_json,
                lambda data: study_list_text(data["studies"]))


@main.command()
@click.argument("study_id")
@server_option
@home_option
@json_option
def status(study_id, server, home, as_json) -> None:
    """Show one study: state, counts, best value, where its records are, and its trials."""
    from service._render import status_text

    with user_errors():
        answer(studies_for(server, home).status(study_id), as_json, status_text)


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

    with user_errors():
        studies = studies_for(server, home)
        read = studies.logs
        resolved = studies.status(study_id)["id"]
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

    with user_errors():
        studies = studies_for(server, home)
        study = studies.stop(study_id, force=force)
        deadline = time.monotonic() + timeout
        while wait and study["status"] in ACTIVE_STATUSES:
            if time.monotonic() > deadline:
                raise UserError(
                    f"study {study['id']} was asked to stop but is still {study['status']} after {timeout}s; its "
                    f"driver stops at the end of its current step (`hpsearch logs {study['id']}` shows it)"
                )
            time.sleep(1.0)
            study = studies.status(study["id"])
    if as_json:
        click.echo(json.dumps(study, default=str))
    else:
        state = study["status"] if study["status"] not in ACTIVE_STATUSES else "stop requested"
        click.echo(f"study {study['id']}: {state}")


@main.command()
@click.argument("study_id")
@server_option
@home_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the best configuration as a complete space file that `hpsearch train` runs: the study's "
                   "space with the best values fixed, nothing searched, one trial.")
@json_option
def best(study_id, server, home, output, as_json) -> None:
    """The best configuration of a study."""
    import yaml

    with user_errors():
        data = studies_for(server, home).best(study_id)
    if output:
        with open(output, "w") as fh:
            fh.write(data["space"])
    if as_json:
        click.echo(json.dumps({k: data[k] for k in ("study_id", "best_value", "best_params")}))
    else:
        metric = data["metric"] if isinstance(data["metric"], str) else ",".join(data["metric"])
        click.echo(f"best {metric} = {data['best_value']}")
        click.echo(yaml.safe_dump(data["best_params"], sort_keys=False).rstrip())


@main.command()
@click.argument("space_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the space, e.g. --set budget.max_epochs=20 (repeatable).")
@tracking_option
@home_option
@click.option("--ray-address", envvar="RAY_ADDRESS", help="Train on this Ray cluster. Env: RAY_ADDRESS.")
@click.option("--register", metavar="NAME", help="Register the trained model in the MLflow Model Registry as NAME.")
@click.option("--quiet", "-q", is_flag=True, help="Nothing on stderr but errors.")
@json_option
def train(space_file, overrides, tracking_uri, home, ray_address, register, quiet, as_json) -> None:
    """Train the one configuration of SPACE_FILE fully, as one MLflow run (`hpsearch best ID -o best.yaml`
    writes such a file from a study's best trial; the run is tagged hpsearch.retrain_of with the study)."""
    from service._render import training_text
    from service._train import train_once
    from service.space import load_space

    with user_errors():
        space = load_space(space_file, overrides)
        settings = settings_for(home, tracking_uri)
        settings.home.mkdir(parents=True, exist_ok=True)
        with stdout_to_stderr(as_json):
            trained = train_once(space, settings, ray_address=ray_address, register=register, show_progress=not quiet)
    answer(trained.to_dict(), as_json, training_text)
    if trained.state != "completed":
        sys.exit(EXIT_STUDY_FAILED)


@main.command()
@click.argument("study_id")
@server_option
@home_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def delete(study_id, server, home, yes, as_json) -> None:
    """Forget a finished study: its MLflow runs (MLflow's delete: gone from the UI, `mlflow gc` purges them),
    its Optuna study, its checkpoints, its log and its registry row."""
    with user_errors():
        studies = studies_for(server, home)
        found = studies.status(study_id)
        if not yes and not as_json:
            click.confirm(f"delete study {found['id']} ({found['status']}, {found['n_trials']} trials) and all its "
                          f"records?", abort=True, err=True)
        gone = studies.delete(found["id"])
    answer(gone, as_json, lambda g: f"study {g['id']}: deleted ({g['deleted']['mlflow_runs']} MLflow runs, "
                                     f"Optuna study, checkpoints and log)")


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

    with user_errors():
        serve_api(host=host, port=port, ray_dashboard=ray_dashboard, settings=settings_for(home, tracking_uri))


@main.command()
@click.argument("study_id", required=False)
@tracking_option
@home_option
@server_option
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="Port of the UI.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the UI listens on.")
def ui(study_id, tracking_uri, home, server, port, host) -> None:
    """Open the MLflow UI on the store a study was recorded in (STUDY_ID), else on the configured store; for
    an MLflow server, print its address (and the study's page)."""
    page = ""
    with user_errors():
        if study_id:
            found = studies_for(server, home).status(study_id)
            tracking_uri = found.get("mlflow_ui_url") or found["mlflow_tracking_uri"]
            page = f"#/experiments/{found['mlflow_experiment_id']}/runs" if found.get("mlflow_experiment_id") else ""
        uri = settings_for(None, tracking_uri).tracking_uri
    if uri.startswith(("http://", "https://")):
        click.echo(f"the MLflow server is at {uri.rstrip('/')}/{page}")
        return
    click.echo(f"MLflow UI for {uri} at http://{host}:{port}/{page} (Ctrl-C stops it)", err=True)
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", host, "--port", str(port)])


def entry() -> None:
    """The `hpsearch` executable (and `python -m service.cli`): `main`, ended the quick way."""
    turn_off_library_telemetry()
    run_then_exit(main)


if __name__ == "__main__":  # pragma: no cover
    entry()
