"""The hpsearch API service (`hpsearch serve`) and the client the CLI uses to talk to it."""

from service.api._app import ApiConfig, create_app
from service.api._jobs import JobsUnavailable, RayJobs

__all__ = ["ApiConfig", "JobsUnavailable", "RayJobs", "create_app"]
