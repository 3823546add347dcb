"""Opening a study's MLflow store on SQLite, as several processes on one machine do."""

from __future__ import annotations

import pytest

from support import run_together

pytestmark = pytest.mark.slow  # fresh interpreters importing MLflow: seconds

# Imports and warms up first, then waits for the moment given, so that the processes open the store within a
# few milliseconds of each other.
_OPEN_AT = """
import sys, time
from service._tracking import client_for, get_or_create_experiment
import mlflow.store.tracking.sqlalchemy_store
print("ready", flush=True)
start = float(sys.stdin.readline())
while time.time() < start:
    pass
get_or_create_experiment(client_for(sys.argv[1]), "shared")
"""


def test_processes_opening_a_new_sqlite_store_at_once_all_open_it(tmp_path):
    """Two `hpsearch submit` on a fresh home (or one and `hpsearch status`): MLflow creates and upgrades the
    tables of a new store without a lock of its own ("table runs already exists", "duplicate column name" in
    18 of 24 such processes before they took turns)."""
    answers = []
    for attempt in range(2):
        done = run_together(_OPEN_AT, [f"sqlite:///{tmp_path / f'mlflow-{attempt}.db'}"], processes=4)
        answers += ["ok" if p.returncode == 0 else p.stderr.strip().splitlines()[-1] for p in done]

    assert answers == ["ok"] * 8


def test_a_store_in_memory_or_a_missing_folder_takes_no_lock(tmp_path):
    from service._tracking import _one_opener_at_a_time

    for uri in ("sqlite://", f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}", "http://127.0.0.1:5000"):
        with _one_opener_at_a_time(uri):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_store_in_a_folder_this_user_may_only_read_still_opens(tmp_path):
    """Reading someone else's study (a shared home, a read-only copy): no lock file can be made, and none is
    needed to read."""
    import os

    from service._tracking import _one_opener_at_a_time

    if os.geteuid() == 0:  # root may write anywhere: made with a folder that is a file's place instead
        folder = tmp_path / "store"
        folder.mkdir()
        (folder / "mlflow.db.lock").mkdir()  # the lock file's name is taken by a folder: it cannot be opened
    else:
        folder = tmp_path / "store"
        folder.mkdir()
        folder.chmod(0o555)
    with _one_opener_at_a_time(f"sqlite:///{folder / 'mlflow.db'}"):
        pass


def _reader_holds_a_read_transaction(database):
    import sqlite3

    reader = sqlite3.connect(database, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a read lock, held until the end
    return reader


def test_a_reader_of_the_store_never_holds_up_its_writer(tmp_path):
    """`hpsearch status`, the MLflow UI or a report reading the store while the driver writes: in SQLite's
    default journal mode the writer waits for the reader (and gives up after MLflow's 20 s busy wait). The
    store is switched to WAL when it is opened, for every later connection too; a writer that does not wait
    at all commits beside a reader."""
    import sqlite3

    from service._tracking import client_for

    database = tmp_path / "mlflow.db"
    client = client_for(f"sqlite:///{database}")
    run = client.create_run(client.create_experiment("x"))
    assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    reader = _reader_holds_a_read_transaction(database)
    writer = sqlite3.connect(database, timeout=0, isolation_level=None)
    writer.execute("UPDATE runs SET name = 'renamed' WHERE run_uuid = ?", (run.info.run_id,))  # autocommit
    client.log_metric(run.info.run_id, "m", 1.0)
    reader.close()

    assert client.get_run(run.info.run_id).info.run_name == "renamed"


def _journal_mode(database) -> str:
    import sqlite3

    return sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0]


def test_a_store_kept_busy_is_left_in_its_mode_and_switched_at_the_next_opening(tmp_path):
    """The switch to WAL is best effort: while another process holds the store's write lock it gives up
    within a second or so instead of holding up (or failing) the study, and a later opening makes it."""
    import sqlite3

    from service._database import use_write_ahead_log

    database = tmp_path / "store.db"
    sqlite3.connect(database).execute("CREATE TABLE t (x)")
    busy = sqlite3.connect(database, isolation_level=None)
    busy.execute("BEGIN IMMEDIATE")  # another process in the middle of a write

    use_write_ahead_log(f"sqlite:///{database}")
    assert _journal_mode(database) == "delete"

    busy.execute("COMMIT")
    use_write_ahead_log(f"sqlite:///{database}")
    assert _journal_mode(database) == "wal"


def test_a_store_opened_read_only_is_left_as_it_is(tmp_path):
    import sqlite3

    from service._database import use_write_ahead_log

    database = tmp_path / "store.db"
    sqlite3.connect(database).execute("CREATE TABLE t (x)")
    use_write_ahead_log(f"sqlite:///{database}?mode=ro&uri=true")
    use_write_ahead_log(f"sqlite:///{tmp_path / 'missing.db'}")  # nothing there: nothing made

    assert _journal_mode(database) == "delete" and not (tmp_path / "missing.db").exists()


def test_sqlite_urls_name_the_file_sqlite_opens():
    from pathlib import Path

    from service._database import sqlite_file

    assert sqlite_file("sqlite:////abs/mlflow.db") == Path("/abs/mlflow.db")
    assert sqlite_file("sqlite:///mlflow.db") == Path("mlflow.db")  # the working directory's, as SQLite opens it
    assert sqlite_file("sqlite:///~/x.db") == Path("~/x.db")  # SQLite does not expand `~`: neither does hpsearch
    assert [sqlite_file(url) for url in ("sqlite://", "sqlite:///:memory:", "http://127.0.0.1:5000",
                                         "postgresql://u@h/db", "./mlruns", "file:///tmp/mlruns")] == [None] * 6
