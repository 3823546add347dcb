"""RayJobs, the API's client of the Ray Jobs API: what it sends, and how Ray's failures become one-line errors.

A stand-in for Ray's JobSubmissionClient is injected (`RayJobs._client`); launching drivers on a real
cluster is covered by tests/test_local_cluster_e2e.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from service.api._jobs import JobsUnavailable, RayJobs


@dataclass
class FakeJobClient:
    statuses: dict = field(default_factory=dict)
    submitted: list = field(default_factory=list)
    fail_with: Exception | None = None

    def submit_job(self, **kwargs):
        if self.fail_with:
            raise self.fail_with
        self.submitted.append(kwargs)
        return kwargs["submission_id"]

    def get_job_status(self, job_id):
        if self.fail_with:
            raise self.fail_with
        if job_id not in self.statuses:
            raise RuntimeError(f"Job {job_id} does not exist")

        class Status:
            value = self.statuses[job_id]

        return Status()

    def stop_job(self, job_id):
        raise RuntimeError("job already ended")


def _jobs(client: FakeJobClient) -> RayJobs:
    return RayJobs(address="http://ray-head:8265", driver_env={"HPSEARCH_REGISTRY_URL": "postgresql://h/db"},
                   python="/venv/bin/python", _client=client)


def test_jobs_launch_runs_the_driver_with_the_clusters_environment():
    client = FakeJobClient()
    job_id = _jobs(client).launch("digits-1")
    (job,) = client.submitted
    assert job_id.startswith("hpsearch-digits-1-") and job["submission_id"] == job_id
    assert job["entrypoint"] == "/venv/bin/python -m service.cli run --study digits-1"
    assert job["runtime_env"] == {"env_vars": {"HPSEARCH_REGISTRY_URL": "postgresql://h/db"}}
    assert job["metadata"] == {"hpsearch.study_id": "digits-1"}


def test_jobs_launch_quotes_what_it_puts_on_the_command_line():
    client = FakeJobClient()
    _jobs(client).launch("a; rm -rf /")
    assert client.submitted[0]["entrypoint"].endswith("--study 'a; rm -rf /'")


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"])
def test_jobs_state_is_rays_word(state):
    assert _jobs(FakeJobClient(statuses={"j": state})).state("j") == state


def test_jobs_state_of_no_job_or_a_forgotten_one_is_none():
    jobs = _jobs(FakeJobClient())
    assert jobs.state(None) is None and jobs.state("gone") is None


@pytest.mark.parametrize("call", [lambda j: j.launch("s"), lambda j: j.state("j")])
def test_jobs_failures_of_ray_are_jobs_unavailable_in_one_line(call):
    jobs = _jobs(FakeJobClient(fail_with=ConnectionError("Failed to connect\nto the dashboard\nat ...")))
    with pytest.raises(JobsUnavailable) as caught:
        call(jobs)
    assert "\n" not in str(caught.value) and "Failed to connect" in str(caught.value)


def test_jobs_stop_of_an_ended_job_is_quiet():
    _jobs(FakeJobClient()).stop("j")  # Ray refuses; the job is not running, which is what was asked


def test_jobs_unreachable_dashboard_is_jobs_unavailable():
    jobs = RayJobs(address="http://127.0.0.1:9")
    with pytest.raises(JobsUnavailable, match="cannot reach the Ray Jobs API at http://127.0.0.1:9"):
        jobs.state("j")
