"""The study verbs — submit, list, status, logs, stop, resume, best — behind one interface, `Studies`.

Three implementations answer them with the same dicts (service/_views.py):

    LocalStudies      a registry on this machine; `submit` and `resume` run the study here, in this process
    ClusterStudies    the cluster's registry; drivers run as Ray jobs (service/api/_cluster.py, the API's)
    RemoteStudies     a cluster's API over HTTP (service/_client.py, the CLI's `--server`)

The CLI parses, calls one verb and prints; it never asks which kind it holds.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Optional, Protocol

from service._clock import now
from service._driver import driver_alive, end_driver, on_this_host
from service._errors import StudyConflict
from service._records import close_abandoned, delete_records
from service._registry import Registry, StudyRecord, open_registry
from service._settings import Settings
from service._states import ACTIVE_STATUSES, StudyStatus
from service._studylog import append_log
from service._views import best_dict, logs_dict, status_dict, study_dict

# A driver writes `heartbeat_at` every few seconds (service/_progress.py); silence this long means it is gone.
HEARTBEAT_TIMEOUT_S = 60.0
FORCE_STOP_WAIT_S = 15.0  # after ending a driver, how long to wait for its process to be gone


class Studies(Protocol):
    def submit(self, space, *, warm_start: Optional[str] = None, register: Optional[str] = None) -> dict: ...
    def list(self, status: Optional[str] = None, limit: int = 100) -> list[dict]: ...
    def status(self, study_id: str) -> dict: ...
    def logs(self, study_id: str, offset: int = 0) -> dict: ...
    def stop(self, study_id: str, force: bool = False) -> dict: ...
    def resume(self, study_id: str, register: Optional[str] = None) -> dict: ...
    def best(self, study_id: str) -> dict: ...
    def delete(self, study_id: str) -> dict: ...


def summary_when_done(studies: Studies, study: dict, echo: Optional[Callable[[str], None]] = None,
                      poll_s: float = 1.0) -> dict:
    """The study's summary once it has ended: at once for a study that ran in this process (which showed its
    progress as it went); for a cluster's, after handing its new log text to `echo` until it ends."""
    if study["status"] not in ACTIVE_STATUSES:
        return studies.status(study["id"])["summary"]
    offset = 0
    while True:
        page = studies.logs(study["id"], offset)
        if page["text"] and echo:
            echo(page["text"])
        offset = page["offset"]
        if page["finished"]:
            data = studies.status(study["id"])
            if data["status"] not in ACTIVE_STATUSES:
                rest = studies.logs(study["id"], offset)
                if rest["text"] and echo:
                    echo(rest["text"])
                return data["summary"]
        time.sleep(poll_s)


class RegistryStudies:
    """The verbs on a registry; subclasses say how drivers are started, checked and ended."""

    def __init__(self, registry: Optional[Registry], settings: Settings):
        if registry is not None:
            self.registry = registry
        self.settings = settings

    # -- how drivers are run: the subclasses' part -----------------------------------------------------
    def driver_running(self, record: StudyRecord) -> bool:
        raise NotImplementedError

    def end_driver(self, record: StudyRecord) -> None:
        raise NotImplementedError

    def notice_gone_driver(self, record: StudyRecord) -> StudyRecord:
        """The record, closed as crashed (or failed) when its driver is gone without closing it."""
        return record

    # -- the verbs -------------------------------------------------------------------------------------
    def find(self, study_id: str) -> StudyRecord:
        return self.notice_gone_driver(self.registry.find_or_raise_by_id(study_id))

    def list(self, status: Optional[str] = None, limit: int = 100) -> list[dict]:
        records = [self.notice_gone_driver(r) for r in self.registry.list(limit=limit)]
        return [study_dict(r) for r in records if status is None or r.status == status]

    def status(self, study_id: str) -> dict:
        return status_dict(self.find(study_id))

    def logs(self, study_id: str, offset: int = 0) -> dict:
        record = self.find(study_id)
        return logs_dict(record, str(self.settings.log_path(record.id)), offset)

    def best(self, study_id: str) -> dict:
        record = self.find(study_id)
        found = best_dict(record)
        if found is None:
            raise StudyConflict(f"study {record.id} has no completed trial yet (status {record.status})")
        return found

    def stop(self, study_id: str, force: bool = False) -> dict:
        """Ask the study's driver to stop (it polls the registry and ends the study as Ctrl-C does). A study
        whose driver is gone — still queued, or crashed — is marked stopped here. With `force`, a live driver
        is ended instead of asked (for a driver that does not answer); its study resumes from Tune's last
        snapshot, as after a crash."""
        record = self.find(study_id)
        if record.status.finished:
            raise StudyConflict(f"study {record.id} is already {record.status}; there is nothing to stop")
        record = self.registry.update(record.id, stop_requested_at=record.stop_requested_at or now())
        log_path = str(self.settings.log_path(record.id))
        append_log(log_path, "stop requested" + (" (forced)" if force else ""))
        if force and self.driver_running(record):
            self.end_driver(record)
            deadline = time.monotonic() + FORCE_STOP_WAIT_S
            while self.driver_running(record) and time.monotonic() < deadline:
                time.sleep(0.5)
            record = self.registry.find_or_raise_by_id(record.id)
            if record.status.finished:  # it closed the study itself on its way out
                return study_dict(record)
            return study_dict(close_abandoned(self.registry, record, log_path, StudyStatus.STOPPED,
                                              "stopped by force: its driver was ended"))
        if self.driver_running(record):
            return study_dict(record)
        return study_dict(close_abandoned(self.registry, record, log_path, StudyStatus.STOPPED,
                                          "stopped while no driver was running it"))

    def delete(self, study_id: str) -> dict:
        """Forget a study that no driver runs: its runs, trials, checkpoints, log and registry row."""
        record = self.find(study_id)
        if not record.status.finished:
            raise StudyConflict(f"study {record.id} is still {record.status}; stop it first (`hpsearch stop {record.id}`)")
        return delete_records(self.registry, record, self.settings.home, str(self.settings.log_path(record.id)))

    def check_resumable(self, record: StudyRecord) -> None:
        if record.status == StudyStatus.SUCCEEDED:
            raise StudyConflict(f"study {record.id} already succeeded; nothing to resume (submit a new study instead)")
        if not record.status.finished and self.driver_running(record):
            raise StudyConflict(f"study {record.id} is still {record.status}; stop it first (`hpsearch stop {record.id}`)")


class LocalStudies(RegistryStudies):
    """Studies run by drivers on this machine: `submit` and `resume` run the study in this process."""

    def __init__(self, settings: Settings, *, ray_address: Optional[str] = None, show_progress: bool = True):
        super().__init__(None, settings)
        self.ray_address = ray_address
        self.show_progress = show_progress

    @functools.cached_property
    def registry(self) -> Registry:
        """Opened on first use: a submit refused before anything is recorded leaves no registry file behind."""
        return open_registry(self.settings.registry_url)

    def submit(self, space, *, warm_start: Optional[str] = None, register: Optional[str] = None) -> dict:
        from service._runner import submit_study

        self.settings.home.mkdir(parents=True, exist_ok=True)
        # The command returns with the summary; the study's last report lands on its MLflow run seconds later.
        summary = submit_study(space, self.settings, show_progress=self.show_progress, ray_address=self.ray_address,
                               register=register, warm_start=warm_start, wait_for_report=False)
        return study_dict(self.registry.find_or_raise_by_id(summary.study_id))

    def resume(self, study_id: str, register: Optional[str] = None) -> dict:
        from service._runner import resume_study

        self.check_resumable(self.find(study_id))
        summary = resume_study(study_id, self.settings, show_progress=self.show_progress,
                               ray_address=self.ray_address, register=register, wait_for_report=False)
        return study_dict(self.registry.find_or_raise_by_id(summary.study_id))

    def driver_running(self, record: StudyRecord) -> bool:
        return driver_alive(record.driver)

    def end_driver(self, record: StudyRecord) -> None:
        end_driver(record.driver)

    def notice_gone_driver(self, record: StudyRecord) -> StudyRecord:
        """A running study whose driver process is gone from this host, or whose driver elsewhere has been
        silent for HEARTBEAT_TIMEOUT_S, crashed: close it so that `status` says so and `resume` continues it."""
        if record.status != StudyStatus.RUNNING:
            return record
        if on_this_host(record.driver):
            if driver_alive(record.driver):
                return record
            reason = f"its driver ({record.driver}) ended without closing the study"
        else:
            beat = record.heartbeat_at
            if beat is None or (now() - beat).total_seconds() < HEARTBEAT_TIMEOUT_S:
                return record
            reason = f"its driver ({record.driver}) has been silent since {beat:%Y-%m-%d %H:%M:%S} UTC"
        current = self.registry.find_or_raise_by_id(record.id)  # it may have closed the study meanwhile
        if current.status != StudyStatus.RUNNING:
            return current
        return close_abandoned(self.registry, current, str(self.settings.log_path(record.id)), StudyStatus.CRASHED, reason)

