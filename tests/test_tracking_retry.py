"""A study's MLflow calls ride out a tracking server whose database connections are all busy.

Such a server answers 400 ("QueuePool limit ... connection timed out") once a request has waited its pool's
timeout (SQLAlchemy's 30 s) for a connection; MLflow's client does not retry a 400, so a driver would fail its
study on it. hpsearch's client (`service._tracking.client_for`) sends such a call again. Made here for real: an
MLflow server on the machine's PostgreSQL with a pool of two connections (one and one overflow; MLflow reads
an overflow of 0 as its default, 10), both held by requests that wait on a table lock.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, text
from support import mlflow_server

from service._tracking import client_for, store_was_busy

pytestmark = pytest.mark.e2e


@pytest.fixture
def busy_mlflow(tmp_path, fresh_pg_url):
    """A real MLflow server whose database pool holds two connections; yields (url, database url)."""
    env = {**os.environ, "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "1", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "1"}
    with mlflow_server(tmp_path, fresh_pg_url, env=env) as url:
        yield url, fresh_pg_url


def test_a_call_that_met_a_busy_mlflow_database_is_sent_again(busy_mlflow):
    url, db_url = busy_mlflow
    experiment_id = client_for(url).create_experiment("busy")
    locker = create_engine(db_url).connect()
    locker.execute(text("LOCK TABLE experiments IN ACCESS EXCLUSIVE MODE"))  # held until the rollback below
    outcomes: dict[str, object] = {}

    def call(name: str, client) -> None:
        try:
            outcomes[name] = client.get_experiment(experiment_id).name
        except MlflowException as exc:
            outcomes[name] = exc

    # Two requests take the server's two connections and wait on the lock with them.
    holders = [threading.Thread(target=call, args=(f"holder {i}", MlflowClient(url))) for i in range(2)]
    for holder in holders:
        holder.start()
    time.sleep(2)
    plain = threading.Thread(target=call, args=("plain", MlflowClient(url)))
    retrying = threading.Thread(target=call, args=("retrying", client_for(url)))
    plain.start()
    retrying.start()
    plain.join(timeout=90)  # answered after the server's 30 s wait for a connection
    locker.rollback()  # the lock goes, the holders' requests end, the connections are free again
    locker.close()
    for holder in holders:
        holder.join(timeout=60)
    retrying.join(timeout=90)

    assert isinstance(outcomes["plain"], MlflowException) and store_was_busy(outcomes["plain"]), outcomes
    assert outcomes == {"holder 0": "busy", "holder 1": "busy", "plain": outcomes["plain"], "retrying": "busy"}, outcomes


def test_only_a_busy_store_is_taken_for_a_passing_fault():
    from mlflow.protos import databricks_pb2 as codes

    assert store_was_busy(MlflowException("QueuePool limit of size 1 overflow 0 reached, connection timed out"))
    assert store_was_busy(MlflowException("could not connect", error_code=codes.TEMPORARILY_UNAVAILABLE))
    assert not store_was_busy(MlflowException("Invalid value for param 'lr'", error_code=codes.INVALID_PARAMETER_VALUE))
    assert not store_was_busy(MlflowException("no run", error_code=codes.RESOURCE_DOES_NOT_EXIST))
