"""`hpsearch serve`: the API service, configured from the environment the cluster gives it."""

from __future__ import annotations

import logging
import os

from service._errors import StudyError
from service._settings import Settings
from service._telemetry import telemetry_env

MIN_TOKEN_CHARS = 16


def serve_api(*, host: str, port: int, ray_dashboard: str, settings: Settings) -> None:
    import uvicorn

    from service.api import create_app

    # The service answers many requests at once (FastAPI's thread pool): a few connections per store, where a
    # driver holds one.
    os.environ.setdefault("HPSEARCH_DB_POOL_SIZE", "4")
    app = create_app(api_config(ray_dashboard, settings))
    logging.getLogger("service").setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").addFilter(drop_query_strings)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True, server_header=False)


def drop_query_strings(record: logging.LogRecord) -> bool:
    """The access log keeps the path and drops the query string: a token pasted into a URL by mistake
    (`?token=...`) must not land in a log. uvicorn's access record is (client, method, path, version, status)."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
        record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
    return True


def api_config(ray_dashboard: str, settings: Settings):
    from service.api import ApiConfig, RayJobs

    token = os.environ.get("HPSEARCH_TOKEN", "").strip()
    if len(token) < MIN_TOKEN_CHARS:
        what = "is not set" if not token else f"has {len(token)} characters"
        raise StudyError(
            f"HPSEARCH_TOKEN {what}; the service needs a token of at least {MIN_TOKEN_CHARS} characters for its "
            f"callers, e.g. from: python -c \"import secrets; print(secrets.token_hex(32))\""
        )
    # What every study driver launched on the cluster needs to find the study and the shared storage.
    driver_env = {
        "HPSEARCH_REGISTRY_URL": settings.registry_url,
        "HPSEARCH_OPTUNA_STORAGE": settings.optuna_storage,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "HPSEARCH_HOME": str(settings.home),
        **telemetry_env(),  # for the job's workers on other nodes; the driver itself sets them as it starts
    }
    for name in ("HPSEARCH_DATA_DIR", "PYTHONPATH", "HPSEARCH_REPORT_INTERVAL_S", "HPSEARCH_LAST_REPORT_TIMEOUT_S",
                 "HPSEARCH_TRAINABLE_MODULES"):
        if os.environ.get(name):
            driver_env[name] = os.environ[name]
    return ApiConfig(token=token, settings=settings, jobs=RayJobs(address=ray_dashboard, driver_env=driver_env),
                     mlflow_ui_url=os.environ.get("HPSEARCH_MLFLOW_UI_URL") or None)
