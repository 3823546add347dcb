"""Faults injected on purpose into the cluster of docker-compose.yml (`scripts/local-cluster up --workers 2`:
the MLflow server and the registry on PostgreSQL, a Ray head, two worker nodes, the API), used through the
API as a user does. Each test ends with the same check: the registry, Optuna and MLflow agree trial by trial
(tests/support.py: assert_records_agree).

The trials are the user trainable tests/user_trainables/chaos.py: it checkpoints every epoch and writes down
every epoch it starts, and on which node, in a journal folder under the cluster's directory (one machine, so
every node sees it), which tells which trials a killed node was running and how many epochs each redid.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Optional

import optuna
import pytest
from mlflow.tracking import MlflowClient

from service._searcher import LOST_REASON
from support import assert_records_agree, cluster_script, local_cluster, wait_for

pytestmark = pytest.mark.e2e

CHAOS_SPACE = """
name: {name}
trainable: "chaos:train"
metric: score
mode: max
budget: {{trials: {trials}, max_epochs: {epochs}, concurrency: {concurrency}{budget}}}
sampler: {{type: random, seed: {seed}}}
scheduler: {{type: fifo}}
resources: {{cpu: 1, gpu: 0.5}}
params:
  x: {{type: float, low: 0.0, high: 1.0}}
fixed: {{sleep: {sleep}, journal: "{journal}"{fixed}}}
"""


@pytest.fixture(scope="module")
def cluster():
    """`scripts/local-cluster up --workers 2`; `down` at the end, whatever happened."""
    yield from local_cluster(workers=2)


# -- helpers --------------------------------------------------------------------------------------------------
def _hpsearch(cluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=cluster["env"], cwd=cluster["root"],
                          capture_output=True, text=True, timeout=timeout)


def _space(cluster, tmp_path: Path, name: str, *, trials: int, epochs: int, sleep: float, seed: int,
           concurrency: int = 4, budget: str = "", fixed: str = "") -> tuple[Path, Path]:
    """A chaos space file and its journal folder."""
    journal = cluster["root"] / f"journal-{name}"
    journal.mkdir()
    path = tmp_path / f"{name}.yaml"
    path.write_text(CHAOS_SPACE.format(name=name, trials=trials, epochs=epochs, concurrency=concurrency, seed=seed,
                                       sleep=sleep, journal=journal, budget=budget, fixed=fixed))
    return path, journal


def _api(cluster, method: str, path: str, body: Optional[dict] = None) -> dict:
    """One call to the hpsearch API, as `hpsearch --server` makes it (polling through the CLI would start a
    Python process per look, which a small machine running a cluster feels)."""
    request = urllib.request.Request(
        cluster["env"]["HPSEARCH_SERVER"].rstrip("/") + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {cluster['env']['HPSEARCH_TOKEN']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def _submit(cluster, space: Path) -> str:
    """POST /studies, which is what `hpsearch submit SPACE` does with a server."""
    return _api(cluster, "POST", "/studies", {"space": space.read_text(), "filename": space.name})["id"]


def _status(cluster, study_id: str) -> dict:
    """GET /studies/ID: what `hpsearch status ID --json` prints with a server."""
    return _api(cluster, "GET", f"/studies/{study_id}")


def _ended(cluster, study_id: str, timeout: float) -> dict:
    return wait_for(lambda: (s := _status(cluster, study_id))["status"] not in ("queued", "running") and s,
                     timeout, f"study {study_id} to end")


def _journal(folder: Path) -> dict[str, list[tuple[int, str, float]]]:
    """Tune trial id -> the epochs it started, in order: (epoch, node, when)."""
    found = {}
    for path in folder.iterdir():
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        found[path.name] = [(int(e), node, float(t)) for e, node, t in lines]
    return found


def _logged_at(line: str) -> float:
    """The time of a line of a study's log ("2026-11-30 12:41:35 ...")."""
    return datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").timestamp()


def _resumed_from_checkpoints(started: list[int]) -> bool:
    """Epochs started in this order went on from the last checkpoint after every interruption: each epoch is
    the next one, or the one in flight again (never further back)."""
    return started[0] == 1 and all(b in (a, a + 1) for a, b in zip(started, started[1:]))


def _tune_ids(study_id: str, env: dict) -> dict[int, str]:
    study = optuna.load_study(study_name=study_id, storage=env["HPSEARCH_OPTUNA_STORAGE"])
    return {t.number: t.user_attrs["tune_trial_id"] for t in study.get_trials(deepcopy=False)}


# -- lost worker nodes ----------------------------------------------------------------------------------------
def test_three_lost_workers_fail_no_trial_and_each_resumes_from_its_checkpoint(cluster, tmp_path):
    epochs = 5
    space, journal = _space(cluster, tmp_path, "chaos-lost-workers", trials=12, epochs=epochs, sleep=1.5, seed=11)
    study_id = _submit(cluster, space)

    hit: set[str] = set()  # trials running on a node when it was killed
    back_since = {1: 0.0, 2: 0.0}  # when each worker last came back
    for worker in (1, 2, 1):
        node = f"ray-worker-{worker}"

        def running_there() -> set[str]:
            # Trials whose last epoch began on this node since it came back, with a checkpoint behind them
            # (epoch >= 2) and epochs still to go.
            return {trial for trial, lines in _journal(journal).items()
                    if lines[-1][1] == node and lines[-1][2] > back_since[worker] and 2 <= lines[-1][0] < epochs}

        hit |= wait_for(running_there, 240, f"a trial with a checkpoint running on {node}")
        killed = cluster_script(cluster, "kill-worker", str(worker), "--raylet")
        assert killed.returncode == 0, killed.stderr
        restarted = cluster_script(cluster, "restart", f"worker-{worker}")
        assert restarted.returncode == 0, restarted.stderr[-3000:]
        back_since[worker] = time.time()

    status = _ended(cluster, study_id, 600)

    # Every trial reached its end, none failed for the kills: all twelve completed every epoch.
    records = assert_records_agree(study_id, cluster["env"])
    counts = (status["status"], status["n_trials"], status["n_completed"], status["n_failed"])
    if counts != ("succeeded", 12, 12, 0):  # the whole story, untruncated: reasons, retries, the study's log
        failed = {n: (run.data.tags.get("hpsearch.fail_reason"), run.data.tags.get("hpsearch.retries"))
                  for n, run in records["runs"].items() if run.info.status != "FINISHED"}
        pytest.fail(f"{counts}; failed trials (reason, retries): {failed}\nstudy log:\n"
                    + _hpsearch(cluster, "logs", study_id, timeout=60).stdout[-12000:], pytrace=False)
    assert all(run.data.tags["hpsearch.rung"] == str(epochs) for run in records["runs"].values())
    # The kills are visible: retries on the registry row, on the trials' runs, in the study's log.
    assert records["record"].retries >= 3
    retries = {tune_id: int(records["runs"][n].data.tags.get("hpsearch.retries", 0))
               for n, tune_id in _tune_ids(study_id, cluster["env"]).items()}
    assert all(retries[trial] >= 1 for trial in hit), (hit, retries)
    log = _hpsearch(cluster, "logs", study_id, timeout=60).stdout
    assert log.count("lost its worker") == records["record"].retries and "from its last checkpoint" in log
    # Each interrupted trial went on from its last checkpoint: it redid at most the epoch it was in, once per
    # time its node was lost.
    for trial, lines in _journal(journal).items():
        started = [epoch for epoch, _, _ in lines]
        assert _resumed_from_checkpoints(started) and set(started) == set(range(1, epochs + 1)), (trial, lines)
        assert len(started) - epochs <= retries[trial], (trial, lines, retries[trial])


# -- a killed driver ------------------------------------------------------------------------------------------
def _driver_pid(study_id: str) -> int:
    """The process running the study's driver on the head (`python -m service.cli run --study ID`)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"service.cli" in argv and b"run" in argv and study_id.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no driver process of study {study_id}")


def test_a_killed_driver_is_noticed_and_the_study_resumes_through_the_server(cluster, tmp_path):
    epochs = 4
    study_id, journal = _six_trials_two_completed(cluster, tmp_path, "chaos-driver", epochs=epochs, seed=3)

    os.kill(_driver_pid(study_id), signal.SIGKILL)

    _assert_noticed_and_resumed(cluster, study_id, journal, epochs)


def _six_trials_two_completed(cluster, tmp_path: Path, name: str, *, epochs: int, seed: int) -> tuple[str, Path]:
    """A study of 6 trials, 2 at a time, submitted and past two completed trials and Tune's next save (it saves
    at least every second); (study id, journal folder)."""
    space, journal = _space(cluster, tmp_path, name, trials=6, epochs=epochs, sleep=1.0, seed=seed, concurrency=2)
    study_id = _submit(cluster, space)
    wait_for(lambda: sum(t["state"] == "completed" for t in _status(cluster, study_id)["trials"]) >= 2, 240,
              "two completed trials")
    time.sleep(2.5)
    return study_id, journal


def _assert_noticed_and_resumed(cluster, study_id: str, journal: Path, epochs: int) -> None:
    """After the study's driver died: the service marks the study crashed, every store agreeing; `hpsearch
    resume` then finishes it (6 trials) without running a finished trial again, each interrupted one going on
    from its checkpoint."""
    crashed = wait_for(lambda: (s := _status(cluster, study_id))["status"] == "crashed" and s, 180,
                        "the study to be marked crashed")
    assert f"hpsearch resume {study_id}" in crashed["error"]
    before = assert_records_agree(study_id, cluster["env"])
    finished_before = {n: run.info.run_id for n, run in before["runs"].items()
                       if run.data.tags["hpsearch.state"] == "completed"}
    assert len(finished_before) >= 2

    resumed = _hpsearch(cluster, "resume", study_id, "--wait", "--json", timeout=400)

    assert resumed.returncode == 0, resumed.stderr[-4000:]
    summary = json.loads(resumed.stdout)
    assert (summary["status"], summary["n_completed"]) == ("succeeded", 6), summary
    after = assert_records_agree(study_id, cluster["env"])
    # A trial asked for after Tune's last save (in the second before the kill) is not Tune's to continue: it
    # is failed as lost, never as its own fault, and a new trial takes its place.
    for number, trial in after["trials"].items():
        if trial.state.name == "FAIL":
            reason = after["runs"][number].data.tags["hpsearch.fail_reason"]
            assert reason == LOST_REASON, (number, reason)
    client = MlflowClient(cluster["env"]["MLFLOW_TRACKING_URI"])
    for number, run_id in finished_before.items():
        # Not run again: the same MLflow run, one value per epoch.
        assert after["runs"][number].info.run_id == run_id
        assert [m.step for m in client.get_metric_history(run_id, "score")] == list(range(1, epochs + 1))
    # The trials the crash interrupted went on from their checkpoints: each redid at most the epoch it was in.
    for trial, lines in _journal(journal).items():
        started = [epoch for epoch, _, _ in lines]
        assert _resumed_from_checkpoints(started) and len(started) - epochs <= 1, (trial, lines)


# -- the services restart -----------------------------------------------------------------------------------
def test_an_api_restart_and_a_30_s_mlflow_outage_lose_no_trial_and_no_epoch(cluster, tmp_path):
    """While trials run, the API restarts: the study it did not start is not taken for a dead one. Then the
    MLflow server is gone for 30 s: the driver's writes wait (the MLflow client's own retries, about two
    minutes of them) and Tune with them; afterwards the study goes on and every epoch is in MLflow."""
    epochs = 4
    space, journal = _space(cluster, tmp_path, "chaos-services", trials=8, epochs=epochs, sleep=1.5, seed=7,
                            concurrency=2)
    study_id = _submit(cluster, space)
    wait_for(lambda: any(len(lines) >= 2 for lines in _journal(journal).values()), 240, "a trial in epoch 2")

    restarted = cluster_script(cluster, "restart", "api", timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert _status(cluster, study_id)["status"] == "running"
    down_at = time.time()
    restarted = cluster_script(cluster, "restart", "mlflow", "--down-for", "30", timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    up_at = time.time()

    status = _ended(cluster, study_id, 600)
    assert (status["status"], status["n_completed"], status["n_failed"]) == ("succeeded", 8, 0), status
    # The study lived through the outage: epochs started before MLflow went down and after it came back.
    started = sorted(when for lines in _journal(journal).values() for _, _, when in lines)
    assert started[0] < down_at and started[-1] > up_at, (down_at, up_at, started)
    records = assert_records_agree(study_id, cluster["env"])
    client = MlflowClient(cluster["env"]["MLFLOW_TRACKING_URI"])
    for number, run in records["runs"].items():
        assert run.info.status == "FINISHED" and run.data.tags["hpsearch.state"] == "completed"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "score")] == list(range(1, epochs + 1))


# -- budgets and bad numbers ----------------------------------------------------------------------------------
def test_time_budget_ends_hanging_trials_and_closes_their_records(cluster, tmp_path):
    # seed 5 draws x = 0.22, 0.87, 0.21, 0.92: two trials finish, two hang in epoch 2 for an hour.
    space, _ = _space(cluster, tmp_path, "chaos-time", trials=4, epochs=3, sleep=0.5, seed=5, budget=", time: 20s",
                      fixed=", hang_above: 0.5")
    study_id = _submit(cluster, space)
    summary = _ended(cluster, study_id, 400)["summary"]

    # The hanging trials were ended soon after the budget was spent (Tune waits 5 s, then kills their actors).
    log = _api(cluster, "GET", f"/studies/{study_id}/logs")["text"].splitlines()
    spent = _logged_at(next(line for line in log if "the time budget (20s) is spent" in line))
    ended = _logged_at(next(line for line in log if f"study {study_id} succeeded" in line))
    assert ended - spent < 60, f"the study ended {ended - spent:.0f}s after its time budget was spent"
    records = assert_records_agree(summary["study_id"], cluster["env"])
    hanging = {n for n, t in records["trials"].items() if t.params["x"] > 0.5}
    assert len(hanging) == 2 and summary["status"] == "succeeded" and summary["n_completed"] == 2, summary
    for number in hanging:
        trial, run_ = records["trials"][number], records["runs"][number]
        assert trial.state.name != "RUNNING" and run_.info.status != "RUNNING"
        assert run_.data.tags["hpsearch.rung"] == "1"  # the epoch it finished before it hung
        assert run_.data.tags["hpsearch.fail_reason"] == "budget.time was spent before it ended"


def test_nan_in_the_middle_of_a_trial_fails_it_and_it_is_never_best(cluster, tmp_path):
    # seed 5 draws x = 0.22, 0.87, 0.21, 0.92: the two above 0.5 report NaN in epoch 2, finite values after.
    space, _ = _space(cluster, tmp_path, "chaos-nan", trials=4, epochs=3, sleep=0.3, seed=5, fixed=", nan_above: 0.5")
    summary = _ended(cluster, _submit(cluster, space), 400)["summary"]

    records = assert_records_agree(summary["study_id"], cluster["env"])
    diverged = {n for n, t in records["trials"].items() if t.params["x"] > 0.5}
    assert len(diverged) == 2
    for number in diverged:
        assert records["trials"][number].state.name == "FAIL"
        assert records["runs"][number].data.tags["hpsearch.fail_reason"] == "score was nan in epoch 2"
    completed = [t for t in records["trials"].values() if t.state.name == "COMPLETE"]
    assert summary["best_trial"] not in diverged and math.isfinite(summary["best_value"])
    assert summary["best_value"] == pytest.approx(max(t.value for t in completed))


# -- a busy cluster -------------------------------------------------------------------------------------------
class ConnectionSampler(threading.Thread):
    """Counts the PostgreSQL connections to each of the cluster's databases every 0.2 s, and those of each
    hpsearch process (its connections are named "hpsearch <store> pid <pid>"); keeps the peaks."""

    def __init__(self, pg_base: str, databases: dict):
        super().__init__(daemon=True)
        self.pg_base, self.databases = pg_base, databases
        self.peak: dict[str, int] = {name: 0 for name in databases}
        self.peak_by_pid: dict[int, int] = {}
        self.peak_total = 0
        self.done = threading.Event()

    def run(self) -> None:
        import psycopg2

        connection = psycopg2.connect(self.pg_base + "/postgres")
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self.done.is_set():
                    cursor.execute("SELECT datname, application_name, count(*) FROM pg_stat_activity "
                                   "WHERE datname = ANY(%s) GROUP BY 1, 2", (list(self.databases.values()),))
                    rows = cursor.fetchall()
                    counts, by_pid = {}, {}
                    for database, application, n in rows:
                        counts[database] = counts.get(database, 0) + n
                        if application.startswith("hpsearch ") and " pid " in application:
                            pid = int(application.rsplit(" ", 1)[1])
                            by_pid[pid] = by_pid.get(pid, 0) + n
                    for name, database in self.databases.items():
                        self.peak[name] = max(self.peak[name], counts.get(database, 0))
                    for pid, n in by_pid.items():
                        self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), n)
                    self.peak_total = max(self.peak_total, sum(counts.values()))
                    time.sleep(0.2)
        finally:
            connection.close()


def test_ten_studies_at_once_all_finish_and_every_store_agrees(cluster, tmp_path):
    spaces = [_space(cluster, tmp_path, f"chaos-busy-{i}", trials=2, epochs=2, sleep=0.2, seed=i,
                     concurrency=2)[0] for i in range(10)]
    sampler = ConnectionSampler(cluster["info"]["postgres"], cluster["info"]["databases"])
    sampler.start()
    try:
        with ThreadPoolExecutor(10) as pool:
            study_ids = list(pool.map(lambda space: _submit(cluster, space), spaces))

        def all_ended():
            studies = {s["id"]: s for s in _api(cluster, "GET", "/studies?limit=100")["studies"] if s["id"] in study_ids}
            return all(s["status"] not in ("queued", "running") for s in studies.values()) and studies

        studies = wait_for(all_ended, 900, "ten studies to end")
    finally:
        sampler.done.set()
        sampler.join(timeout=10)

    processes = json.loads((cluster["dir"] / "cluster.json").read_text())["processes"]  # as restarts left them
    api_pid = next(p["pid"] for p in processes.values() if p["role"] == "api")
    drivers = {pid: n for pid, n in sampler.peak_by_pid.items() if pid != api_pid}
    print(f"\npeak PostgreSQL connections with 10 studies at once: {sampler.peak} (both: {sampler.peak_total}); "
          f"per driver {sorted(drivers.values())}, the API {sampler.peak_by_pid.get(api_pid, 0)}")
    assert {s["status"] for s in studies.values()} == {"succeeded"}, studies
    for study_id in study_ids:
        assert_records_agree(study_id, cluster["env"])
    # What each process may hold (service/_database.py; README, Reliability): a driver one connection per
    # store and one more while Optuna checks its schema, the API four per store and that one more.
    assert len(drivers) >= 10 and max(drivers.values()) <= 3, drivers
    assert sampler.peak_by_pid.get(api_pid, 0) <= 9, sampler.peak_by_pid
    assert sampler.peak["mlflow"] <= 16, sampler.peak  # 2 workers x 8 for the runs (scripts/cluster/mlflow)


# -- the head is lost (last: it restarts the whole Ray cluster) -----------------------------------------------
def test_a_lost_head_crashes_its_study_and_resume_continues_it_on_the_new_cluster(cluster, tmp_path):
    """The Ray head is a single point of failure (no GCS fault tolerance): `scripts/local-cluster restart head`
    ends it, and with it every worker node and the study's driver, and brings a new cluster up. The service
    marks the study crashed; `hpsearch resume` continues it on the new cluster, losing nothing."""
    epochs = 4
    study_id, journal = _six_trials_two_completed(cluster, tmp_path, "chaos-head", epochs=epochs, seed=11)

    restarted = cluster_script(cluster, "restart", "head", timeout=400)
    assert restarted.returncode == 0, restarted.stderr[-3000:]

    _assert_noticed_and_resumed(cluster, study_id, journal, epochs)
