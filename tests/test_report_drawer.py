"""service/_report_drawer.py: the study report's own thread — redraws when asked, never more often than its
interval, never after it is closed, imports nothing before a drawing is due — and the child process that draws
the last report."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from service._imports import import_ahead
from service._report import PLOTTING_MODULES
from service._report_drawer import ReportDrawer, close_all
from tests.support import REPO, wait_for


@pytest.fixture(scope="module", autouse=True)
def _plotting_imported():
    """What a drawing imports, loaded already: the tests time the drawer's waits, not the imports."""
    import_ahead(PLOTTING_MODULES)


class _Draws:
    """Counts drawings; each takes `seconds`, and the first `failures` raise."""

    def __init__(self, seconds: float = 0.0, failures: int = 0):
        self.seconds = seconds
        self.failures = failures
        self.times: list[float] = []
        self.threads: set[str] = set()

    def __call__(self) -> None:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        self.times.append(time.monotonic())
        if len(self.times) <= self.failures:
            raise RuntimeError("no plot today")


def _wait_for(condition) -> None:
    wait_for(condition, 10.0, "the drawer", every_s=0.01)


def test_it_draws_on_its_own_thread_once_per_request_and_not_without_one():
    draws = _Draws()
    drawer = ReportDrawer(draws, interval_s=0.0)
    drawer.start()
    time.sleep(0.3)
    assert draws.times == []  # nothing asked for yet

    drawer.request()
    _wait_for(lambda: len(draws.times) == 1)
    time.sleep(0.3)
    drawer.close()

    assert len(draws.times) == 1
    assert draws.threads == {"hpsearch-report"}


def test_requests_within_the_interval_give_one_drawing_after_it():
    draws = _Draws()
    drawer = ReportDrawer(draws, interval_s=0.5)
    started = time.monotonic()
    drawer.start()
    for _ in range(5):
        drawer.request()
        time.sleep(0.02)
    _wait_for(lambda: len(draws.times) == 1)
    time.sleep(0.7)  # a second interval passes without a request: no drawing
    drawer.close()

    assert len(draws.times) == 1
    assert draws.times[0] - started >= 0.5


def test_a_request_after_a_drawing_waits_out_the_interval():
    draws = _Draws()
    drawer = ReportDrawer(draws, interval_s=0.4)
    drawer.start()
    time.sleep(0.4)
    drawer.request()
    _wait_for(lambda: len(draws.times) == 1)
    drawer.request()
    _wait_for(lambda: len(draws.times) == 2)
    drawer.close()

    assert draws.times[1] - draws.times[0] >= 0.4


def test_close_all_stops_every_open_drawer_and_waits_for_their_drawings():
    slow, idle = _Draws(seconds=0.5), _Draws()
    drawers = [ReportDrawer(slow, interval_s=0.0), ReportDrawer(idle, interval_s=0.0)]
    for drawer in drawers:
        drawer.start()
    drawers[0].request()
    _wait_for(lambda: slow.threads)

    close_all()

    assert len(slow.times) == 1  # the drawing under way ended before close_all returned
    for drawer in drawers:
        drawer.request()
    time.sleep(0.2)
    assert (len(slow.times), len(idle.times)) == (1, 0)
    _wait_for(lambda: not any(d.running for d in drawers))


def test_close_waits_for_a_drawing_under_way_and_stops_the_thread():
    draws = _Draws(seconds=0.5)
    drawer = ReportDrawer(draws, interval_s=0.0)
    drawer.start()
    drawer.request()
    _wait_for(lambda: draws.threads)  # the drawing has begun

    drawer.close()

    assert len(draws.times) == 1 and not drawer.running
    drawer.request()
    time.sleep(0.2)
    assert len(draws.times) == 1


def test_a_request_left_at_close_is_not_drawn():
    draws = _Draws()
    drawer = ReportDrawer(draws, interval_s=30.0)
    drawer.start()
    drawer.request()  # waits for its interval...
    time.sleep(0.2)

    drawer.close()  # ...which does not come: the runner draws the last report itself

    _wait_for(lambda: not drawer.running)
    assert draws.times == []


def test_a_drawing_that_fails_is_logged_and_the_next_request_still_draws(caplog):
    draws = _Draws(failures=1)
    drawer = ReportDrawer(draws, interval_s=0.0)
    drawer.start()
    drawer.request()
    _wait_for(lambda: len(draws.times) == 1)
    drawer.request()
    _wait_for(lambda: len(draws.times) == 2)
    drawer.close()

    assert "could not redraw the study report: no plot today" in caplog.text


@pytest.mark.slow
def test_starting_it_imports_no_plotting_library_until_a_drawing_is_due():
    """In a fresh interpreter: a drawer started and asked to redraw before its interval has passed imports
    nothing for it (the driver's CPU is the trials' on a small machine; most studies end before a redraw)."""
    code = (
        "import sys, time\n"
        "from service._report import PLOTTING_MODULES\n"
        "from service._report_drawer import ReportDrawer\n"
        "drawer = ReportDrawer(lambda: None, interval_s=600)\n"
        "drawer.start()\n"
        "drawer.request()\n"
        "time.sleep(1.0)\n"
        "print(drawer.running, [m for m in PLOTTING_MODULES if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True []"


def _closed_study(tmp_path, optuna_storage: str):
    """An MLflow run and a study log as a closed study leaves them, and the context `draw_last_report` reads:
    (client, run id, log path, ctx)."""
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("s")).info.run_id
    log = tmp_path / "study.log"
    log.write_text("")
    ctx = SimpleNamespace(stores=SimpleNamespace(tracking_uri=tracking_uri), parent_run_id=run_id,
                          optuna_storage=optuna_storage, study_id="s-1", space=SimpleNamespace(metrics=["val_acc"]),
                          log_path=str(log))
    return client, run_id, log, ctx


@pytest.mark.slow  # a child process draws: seconds
def test_the_last_report_that_cannot_be_drawn_is_a_line_in_the_study_log_and_said_on_the_run(tmp_path):
    # The child process meets an Optuna storage it cannot open: the study's records are closed already, so the
    # command's outcome stands; the study log and the study's run say what happened to its report.
    from service._report_drawer import draw_last_report
    from service._tracking import TAG_LAST_REPORT

    client, run_id, log, ctx = _closed_study(tmp_path, f"sqlite:///{tmp_path / 'no-such-folder' / 'optuna.db'}")

    draw_last_report(ctx, wait=True)

    line = log.read_text().strip()
    assert "study s-1: its last report was not drawn: OperationalError: " in line and line.count("\n") == 0, line
    assert client.get_run(run_id).data.tags[TAG_LAST_REPORT].startswith("not drawn: OperationalError: ")


def test_a_driver_waits_for_its_last_report_no_longer_than_its_timeout(tmp_path, monkeypatch):
    from service._report_drawer import draw_last_report
    from service._tracking import TAG_LAST_REPORT

    monkeypatch.setenv("HPSEARCH_LAST_REPORT_TIMEOUT_S", "0.05")  # the child cannot even import in that time
    client, run_id, log, ctx = _closed_study(tmp_path, f"sqlite:///{tmp_path / 'optuna.db'}")

    draw_last_report(ctx, wait=True)

    assert "its last report was not drawn: it took longer than 0 s (HPSEARCH_LAST_REPORT_TIMEOUT_S)" in log.read_text()
    assert client.get_run(run_id).data.tags[TAG_LAST_REPORT].startswith("not drawn: it took longer than")


@pytest.mark.slow  # two child processes draw: seconds
def test_a_last_report_a_later_one_replaced_is_not_uploaded(tmp_path):
    # A resumed study asked for its own last report while an older child still drew: the older one's upload
    # is called off (its token is no longer the run's), and it leaves the run's tag to the newer child.
    import json
    import subprocess
    import sys

    import optuna
    from mlflow.tracking import MlflowClient

    from service._tracking import TAG_LAST_REPORT
    from tests.support import REPO

    tracking_uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s-1", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("s")).info.run_id
    client.set_tag(run_id, TAG_LAST_REPORT, "drawing newer")
    (tmp_path / "study.log").write_text("")
    job = {"tracking_uri": tracking_uri, "run_id": run_id, "optuna_storage": storage, "study_name": "s-1",
           "metrics": ["value"], "log_path": str(tmp_path / "study.log"), "token": "older"}

    done = subprocess.run([sys.executable, "-m", "service._report_drawer"], input=json.dumps(job), cwd=REPO,
                          capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stderr[-3000:]
    assert client.list_artifacts(run_id, "report") == []
    assert client.get_run(run_id).data.tags[TAG_LAST_REPORT] == "drawing newer"
    job["token"] = "newer"  # the same child, still wanted: it uploads and says so
    done = subprocess.run([sys.executable, "-m", "service._report_drawer"], input=json.dumps(job), cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report/trials.csv" in {a.path for a in client.list_artifacts(run_id, "report")}
    assert client.get_run(run_id).data.tags[TAG_LAST_REPORT] == "drawn"
    assert (tmp_path / "study.log").read_text() == ""
