"""What every `hpsearch` command shares: the exit codes, user errors as one line, the common options, which
`Studies` a command talks to, and how answers are printed."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Iterator, Optional

import click

from service._states import StudyStatus

EXIT_STUDY_FAILED = 1
EXIT_USER_ERROR = 2


def run_then_exit(command: click.Command) -> None:
    """Run the `hpsearch` command line, then end the process without Python's own teardown.

    Every exit hook still runs (`atexit`: Ray's shutdown of an embedded Ray, logging's flush, MLflow's,
    temporary folders' removal), and stdout and stderr are flushed; what is skipped is freeing every loaded
    module one by one, which with torch, Ray and MLflow loaded takes about 2 s after a study has printed its
    summary (benchmarks/README.md). The exit code is the command's. While a thread other than the main one
    still runs and is not a daemon, Python's own exit (which waits for it) is kept."""
    import atexit
    import threading

    try:
        command.main(prog_name="hpsearch")
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        code = 1
    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()  # the hooks Python would run (it has no public way to run them early)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`| head`), a stream already closed
            pass
    os._exit(code)


class UserError(click.ClickException):
    """A mistake the user can fix: one line on stderr, exit code 2, no traceback."""

    exit_code = EXIT_USER_ERROR


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the service's user-facing exceptions into UserError."""
    from service._errors import StudyError
    from service._registry import RegistryUnavailable, StudyNotFound
    from service.space import SpaceError

    try:
        yield
    except SpaceError as exc:
        # A file's errors come together (SpaceError.errors); each prints as its own "Error: file:line: ..." line.
        raise UserError("\nError: ".join(exc.lines())) from None
    except (StudyError, StudyNotFound, RegistryUnavailable) as exc:
        raise UserError(str(exc)) from None


def settings_for(home: Optional[str], tracking_uri: Optional[str]):
    from service._settings import resolve_settings

    return resolve_settings(home=home, tracking_uri=tracking_uri)


def studies_for(server: Optional[str], home: Optional[str] = None, tracking_uri: Optional[str] = None, *,
             ray_address: Optional[str] = None, quiet: bool = False):
    """The cluster's studies with --server (token from HPSEARCH_TOKEN), else this machine's registry."""
    if server:
        from service._client import RemoteStudies

        return RemoteStudies(server, os.environ.get("HPSEARCH_TOKEN"))
    from service._studies import LocalStudies

    return LocalStudies(settings_for(home, tracking_uri), ray_address=ray_address, show_progress=not quiet)


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


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[None]:
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


def answer(data, as_json: bool, render) -> None:
    """A verb's answer on stdout: as JSON for scripts, else as `render` puts it for people."""
    click.echo(json.dumps(data, default=str) if as_json else render(data))


def echo_err(text: str) -> None:
    click.echo(text, nl=False, err=True)


def print_summary(summary: dict, as_json: bool) -> None:
    """The outcome of a study (StudySummary.to_dict(), or the server's `summary` with the same keys); exit code 1
    unless it succeeded."""
    from service._render import summary_text

    click.echo(json.dumps(summary, default=str) if as_json else summary_text(summary))
    if summary["status"] != StudyStatus.SUCCEEDED:
        sys.exit(EXIT_STUDY_FAILED)
