"""`ClusterStudies`: the study verbs on the cluster's registry, with drivers launched as Ray jobs.

The API's routes call these; the answers are the dicts every `Studies` returns (service/_views.py). A study
whose Ray job ended without closing it (the driver crashed, or the head restarted) is closed as crashed when
the service next looks at it, with Ray's reason; `resume` launches a new job.
"""

from __future__ import annotations

from typing import Optional

from service._clock import now
from service._records import close_abandoned
from service._registry import StudyRecord
from service._states import ACTIVE_STATUSES, StudyStatus
from service._studies import RegistryStudies
from service._views import study_dict
from service.api._jobs import LIVE_JOB_STATES, JobsUnavailable, RayJobs


class ClusterStudies(RegistryStudies):
    def __init__(self, registry, settings, jobs: RayJobs):
        super().__init__(registry, settings)
        self.jobs = jobs

    def submit(self, space, *, warm_start: Optional[str] = None, register: Optional[str] = None) -> dict:
        from service._runner import record_study

        if warm_start:
            self.registry.find_or_raise_by_id(warm_start)  # 404 now rather than a failed study later
        record = record_study(self.registry, space, self.settings, warm_start=warm_start, register=register)
        return study_dict(self._launch(record))

    def resume(self, study_id: str, register: Optional[str] = None) -> dict:
        record = self.find(study_id)
        self.check_resumable(record)
        # No job id until the new job exists: a status read in between must not judge the old, ended job.
        record = self.registry.update(record.id, status=StudyStatus.QUEUED, stop_requested_at=None, error=None,
                                      finished_at=None, ray_job_id=None)
        return study_dict(self._launch(record))

    def stop(self, study_id: str, force: bool = False) -> dict:
        record = self.find(study_id)
        if not record.status.finished and self.jobs.state(record.ray_job_id) == "PENDING":
            self.jobs.stop(record.ray_job_id)  # not started yet: nothing to end gracefully
            self.registry.update(record.id, stop_requested_at=now())
            return study_dict(close_abandoned(self.registry, record, str(self.settings.log_path(record.id)),
                                              StudyStatus.STOPPED, "stopped before its driver started"))
        return super().stop(study_id, force=force)

    def logs(self, study_id: str, offset: int = 0) -> dict:
        page = super().logs(study_id, offset)
        record = self.registry.find_or_raise_by_id(page["study_id"])
        if page["finished"] and not self.settings.log_path(record.id).exists() and record.ray_job_id:
            # The driver ended before it wrote a line (it could not start): what Ray kept of it is all there is.
            try:
                text = self.jobs.logs(record.ray_job_id)
            except JobsUnavailable:
                text = ""
            page.update(text=text[offset:], offset=max(offset, len(text)))
        return page

    # -- drivers are Ray jobs --------------------------------------------------------------------------
    def driver_running(self, record: StudyRecord) -> bool:
        return self.jobs.state(record.ray_job_id) in LIVE_JOB_STATES

    def end_driver(self, record: StudyRecord) -> None:
        self.jobs.stop(record.ray_job_id)

    def notice_gone_driver(self, record: StudyRecord) -> StudyRecord:
        if record.status not in ACTIVE_STATUSES or not record.ray_job_id:
            return record
        try:
            state = self.jobs.state(record.ray_job_id)
        except JobsUnavailable:  # Ray is down: the registry's word is all there is
            return record
        if state in LIVE_JOB_STATES:
            return record
        current = self.registry.find_or_raise_by_id(record.id)  # the driver may have closed it meanwhile
        if current.status not in ACTIVE_STATUSES:
            return current
        why = self.jobs.message(record.ray_job_id) if state else ""
        reason = f"its driver (Ray job {record.ray_job_id}) ended as {state or 'unknown to Ray'}" + (f": {why}" if why else "")
        return close_abandoned(self.registry, current, str(self.settings.log_path(record.id)), StudyStatus.CRASHED, reason)

    def _launch(self, record: StudyRecord) -> StudyRecord:
        try:
            job_id = self.jobs.launch(record.id)
        except JobsUnavailable as exc:
            self.registry.update(record.id, status=StudyStatus.FAILED, error=str(exc), finished_at=now())
            raise
        return self.registry.update(record.id, ray_job_id=job_id)
