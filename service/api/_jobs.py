"""Launching study drivers on the Ray cluster through the Ray Jobs API.

The API service is the only process that talks to the Jobs API, from inside the cluster network (an exposed
Jobs API is remote code execution: CVE-2023-48022). Each launch is one Ray job whose entrypoint is
`python -m service.cli run --study ID`; a resumed study gets a new job.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import sys
from dataclasses import dataclass, field
from typing import Optional

logger = logging.getLogger(__name__)

# Ray job states in which the driver may still run (or start) and can see a stop request.
LIVE_JOB_STATES = ("PENDING", "RUNNING")


class JobsUnavailable(RuntimeError):
    """The Ray Jobs API cannot be reached or refused us (HTTP 503 to the API's caller)."""


@dataclass
class RayJobs:
    """The Jobs API of one Ray cluster. `driver_env` is the environment every study driver gets (where the
    registry is, the shared storage); `python` is the interpreter on the Ray nodes."""

    address: str  # the head's dashboard, e.g. http://ray-head:8265
    driver_env: dict = field(default_factory=dict)
    python: str = sys.executable
    _client: object = field(default=None, repr=False)

    def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            # Ray attaches the cluster's token (RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH, RAY_AUTH_MODE=token).
            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as exc:  # ConnectionError, or Ray's RuntimeError for an unreachable dashboard
                raise JobsUnavailable(
                    f"cannot reach the Ray Jobs API at {self.address}: {_first_line(exc)}; check HPSEARCH_RAY_DASHBOARD "
                    f"and that the Ray head runs"
                ) from None
        return self._client

    def launch(self, study_id: str) -> str:
        """Start the study's driver; returns the Ray job id."""
        job_id = f"hpsearch-{study_id}-{secrets.token_hex(3)}"
        entrypoint = f"{shlex.quote(self.python)} -m service.cli run --study {shlex.quote(study_id)}"
        try:
            return self.client().submit_job(
                entrypoint=entrypoint,
                submission_id=job_id,
                runtime_env={"env_vars": dict(self.driver_env)},
                metadata={"hpsearch.study_id": study_id},
            )
        except JobsUnavailable:
            raise
        except Exception as exc:
            raise JobsUnavailable(f"the Ray Jobs API at {self.address} did not take the study: {_first_line(exc)}") from None

    def state(self, job_id: Optional[str]) -> Optional[str]:
        """PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED; None for no job or a job Ray no longer knows."""
        if not job_id:
            return None
        try:
            return str(self.client().get_job_status(job_id).value)
        except JobsUnavailable:
            raise
        except RuntimeError as exc:
            if "does not exist" in str(exc):
                return None
            raise JobsUnavailable(f"the Ray Jobs API at {self.address} failed: {_first_line(exc)}") from None
        except Exception as exc:
            raise JobsUnavailable(f"the Ray Jobs API at {self.address} failed: {_first_line(exc)}") from None

    def message(self, job_id: str) -> str:
        try:
            info = self.client().get_job_info(job_id)
            return (info.message or "").strip().splitlines()[-1] if info.message else ""
        except Exception:  # noqa: BLE001 - only for a friendlier error text
            return ""

    def logs(self, job_id: str) -> str:
        try:
            return self.client().get_job_logs(job_id)
        except Exception as exc:
            raise JobsUnavailable(f"the Ray Jobs API at {self.address} failed: {_first_line(exc)}") from None

    def stop(self, job_id: str) -> None:
        try:
            self.client().stop_job(job_id)
        except Exception as exc:  # noqa: BLE001 - a job that already ended cannot be stopped; that is fine
            logger.info("stopping Ray job %s: %s", job_id, exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
