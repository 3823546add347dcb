"""The study's Optuna side: the notes the driver leaves on a study and what the end of a study reads from them."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from service._optuna import (
    LOST_ATTR,
    OUT_OF_TIME_ATTR,
    RETRIES_ATTR,
    noted_retries,
    noted_trials,
    open_storage,
    optuna_number,
    ran_out_of_time,
    tag_tune_trial,
)
from service._outcome import study_outcome
from support import REPO, run_together


@pytest.fixture
def study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction="maximize")


def test_noted_trials_reads_the_numbers_of_one_note(study):
    study.set_user_attr(f"{LOST_ATTR}.3", "its worker was lost 4 times")
    study.set_user_attr(f"{LOST_ATTR}.12", "its worker was lost 4 times")
    study.set_user_attr(f"{RETRIES_ATTR}.5", 2)
    study.set_user_attr(LOST_ATTR + "x.7", "another note whose name only starts the same")

    assert noted_trials(study, LOST_ATTR) == {3, 12}
    assert noted_trials(study, RETRIES_ATTR) == {5}


@pytest.mark.parametrize("noted, expected", [(None, False), (True, True)])
def test_ran_out_of_time_reads_the_note_of_any_run(study, noted, expected):
    if noted is not None:
        study.set_user_attr(OUT_OF_TIME_ATTR, noted)
    assert ran_out_of_time(study) is expected


def test_trials_lost_to_dead_workers_do_not_spend_the_failure_budget(study):
    # Two trials failed after their workers were lost more often than max_retries, one completed: with
    # max_failed_trials 0 the study still succeeds, as the driver judges it from the notes.
    for value in (None, None, 1.0):
        trial = study.ask()
        study.tell(trial, value, state=optuna.trial.TrialState.FAIL if value is None else None)
    for number in (0, 1):
        study.set_user_attr(f"{LOST_ATTR}.{number}", "its worker was lost 4 times")
    kwargs = dict(planned=3, max_failed_trials=0, out_of_time=False, grid_exhausted=False, study_id="s")

    assert study_outcome(study.trials, **kwargs).status == "failed"  # without the notes, as before
    assert study_outcome(study.trials, lost=noted_trials(study, LOST_ATTR), **kwargs).status == "succeeded"


_OPEN_AT = """
import sys, time
import optuna, sqlalchemy  # imported before the start, so that the processes open the storage together
from service._optuna import open_storage
print("ready", flush=True)
start = float(sys.stdin.readline())
while time.time() < start:
    pass
try:
    open_storage(sys.argv[1])
    print("ok")
except Exception as exc:
    print(type(exc).__name__, str(exc).splitlines()[0])
"""


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_storage_at_once_all_open_it(tmp_path):
    """Two studies starting together on a fresh home (or `hpsearch status` while one starts) create Optuna's
    tables at the same moment; SQLite tells the losers "table ... already exists", which they open past."""
    answers = []
    for attempt in range(3):
        url = f"sqlite:///{tmp_path / f'optuna-{attempt}.db'}"
        answers += [done.stdout.strip() for done in run_together(_OPEN_AT, [url], processes=4, timeout_s=120)]

    assert answers == ["ok"] * 12


def test_noted_retries_sums_the_restarts_noted_on_the_given_trials(study):
    for _ in range(4):
        study.tell(study.ask(), 1.0)
    study.set_user_attr(f"{RETRIES_ATTR}.0", 2)
    study.set_user_attr(f"{RETRIES_ATTR}.1", 1)
    study.set_user_attr(f"{RETRIES_ATTR}.9", 5)  # a trial not among those asked about
    trials = [t for t in study.get_trials() if t.number in (0, 1, 2)]

    assert noted_retries(study, trials) == 3


def test_the_number_of_a_tune_trial_this_process_tagged_is_known_without_reading_the_trials(tmp_path, monkeypatch):
    """The driver's callbacks ask for it as each trial starts: the searcher noted it when it asked."""
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage, study_name="tagged", direction="maximize")
    study.tell(study.ask(), 1.0)
    tag_tune_trial(study.ask(), "tune_b")
    loaded = optuna.load_study(study_name="tagged", storage=storage)  # the callbacks load their own
    reads = []
    monkeypatch.setattr(loaded, "get_trials", lambda *a, **k: reads.append(1) or [])

    assert optuna_number(loaded, "tune_b") == 1
    assert reads == []


@pytest.mark.slow
def test_the_number_of_a_tune_trial_another_process_tagged_is_read_from_the_storage(tmp_path):
    """A resumed study's trials were tagged by the driver before it."""
    storage_url = f"sqlite:///{tmp_path / 'optuna.db'}"
    code = ("import sys, optuna; from service._optuna import open_storage, tag_tune_trial; "
            "study = optuna.create_study(storage=open_storage(sys.argv[1]), study_name='elsewhere'); "
            "study.tell(study.ask(), 1.0); tag_tune_trial(study.ask(), 'tune_c')")
    subprocess.run([sys.executable, "-c", code, storage_url], cwd=REPO, check=True, timeout=120)
    study = optuna.load_study(study_name="elsewhere", storage=open_storage(storage_url))

    assert optuna_number(study, "tune_c") == 1
    assert optuna_number(study, "tune_unknown") is None


def test_the_same_tune_id_in_two_studies_keeps_each_studys_number(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    first = optuna.create_study(storage=storage, study_name="first")
    second = optuna.create_study(storage=storage, study_name="second")
    second.tell(second.ask(), 1.0)
    tag_tune_trial(first.ask(), "tune_same")
    tag_tune_trial(second.ask(), "tune_same")

    assert (optuna_number(first, "tune_same"), optuna_number(second, "tune_same")) == (0, 1)


def test_a_reader_of_an_sqlite_storage_never_holds_up_its_writer(tmp_path):
    """`hpsearch status` reading the study while its driver tells Optuna a result: the storage is switched to
    WAL when it is opened, so a writer that does not wait at all commits beside a reader (in SQLite's default
    journal mode it would wait for the reader to finish)."""
    import sqlite3

    database = tmp_path / "optuna.db"
    study = optuna.create_study(storage=open_storage(f"sqlite:///{database}"), study_name="read-while-written")
    assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    reader = sqlite3.connect(database, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM trials").fetchone()  # a read lock, held until the end
    writer = sqlite3.connect(database, timeout=0, isolation_level=None)
    writer.execute("UPDATE studies SET study_name = 'renamed' WHERE study_name = 'read-while-written'")
    study.tell(study.ask(), 1.0)
    reader.close()

    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(f"sqlite:///{database}"))] == ["renamed"]


def test_study_curves_reads_each_tune_trials_learning_curve_from_the_storage(tmp_path):
    """What a resumed study's ASHA replays its rungs from (service/_asha.py): every tagged trial's curve and
    which of them ended, read on call, from a scheduler that was pickled before any of it was written."""
    import pickle

    from service._optuna import LearningCurves, StudyCurves

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    curves = pickle.loads(pickle.dumps(StudyCurves(url, "s")))
    assert curves() == LearningCurves({}, frozenset())  # no study yet
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    for tune_id, values in (("a", [0.1, 0.3, 0.2]), ("b", [0.5])):
        trial = study.ask()
        tag_tune_trial(trial, tune_id)
        for step, value in enumerate(values, start=1):
            trial.report(value, step)
        if tune_id == "a":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    study.ask().report(0.9, 1)  # not asked for by the searcher (no Tune id): not a Tune trial's curve
    assert curves() == LearningCurves({"a": {1: 0.1, 2: 0.3, 3: 0.2}, "b": {1: 0.5}}, ended=frozenset({"a"}))
