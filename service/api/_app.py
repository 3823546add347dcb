"""The hpsearch API: submit, list, follow, stop, resume and query studies on a cluster.

Every request needs `Authorization: Bearer <HPSEARCH_TOKEN>` — the OpenAPI document too; there is no
anonymous access. The token is checked in a middleware rather than a route dependency, because a dependency
never runs for a path no route matches or a method a route does not serve: those must answer 401 too, or the
service tells strangers which paths exist. Answers are the dicts of service/_views.py, so the CLI prints the
same thing whether it asks this service or a local registry. Errors are `{"detail": "<one line>"}` with a 4xx
(the caller can fix it) or 503 (a store or the Ray cluster is down).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from service._errors import StudyConflict, StudyError
from service._optuna import open_storage
from service._registry import Registry, RegistryUnavailable, StudyNotFound
from service._settings import Settings
from service.api._cluster import ClusterStudies
from service.api._jobs import JobsUnavailable, RayJobs
from service.api._models import API_VERSION, errors
from service.api._routes import router

logger = logging.getLogger(__name__)


@dataclass
class ApiConfig:
    token: str  # what callers present as `Authorization: Bearer ...`
    settings: Settings  # the cluster's stores, as the drivers reach them
    jobs: RayJobs
    mlflow_ui_url: Optional[str] = None  # the MLflow UI as users open it (HPSEARCH_MLFLOW_UI_URL)


def create_app(config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="hpsearch",
        version=API_VERSION,
        description="Distributed hyperparameter search for PyTorch. Every request needs `Authorization: Bearer "
                    "<HPSEARCH_TOKEN>`.",
        docs_url=None, redoc_url=None, openapi_url=None,  # the document is served below, behind the token
        responses=errors(401),
        dependencies=[Depends(_no_unknown_query_parameters)],
    )
    app.state.config = config
    app.state.studies = ClusterStudies(Registry(config.settings.registry_url), config.settings, config.jobs)
    # Optuna's tables, made once here rather than by the first drivers at the same time (and the storage the
    # status answers read from, opened once).
    open_storage(config.settings.optuna_storage)
    _require_token(app, config.token)
    _answer_errors_in_one_line(app)
    app.include_router(router)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict:
        return _openapi_with_bearer(app)

    return app


def _require_token(app: FastAPI, token: str) -> None:
    @app.middleware("http")
    async def require_token(request: Request, call_next):
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            reason = "missing" if not header else "wrong"
            return JSONResponse(
                {"detail": f"{reason} token: send `Authorization: Bearer <token>` with the service's HPSEARCH_TOKEN"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )
        response = await call_next(request)
        if response.status_code == 405:
            # Starlette names only the first matching route's methods; GET and POST /studies are two routes.
            response.headers["allow"] = ", ".join(_methods_for(app, request.url.path))
        return response


def _answer_errors_in_one_line(app: FastAPI) -> None:
    def detail(status_code: int):
        async def handler(request: Request, exc: Exception):
            return JSONResponse({"detail": str(exc)}, status_code=status_code)
        return handler

    for error, status_code in ((StudyNotFound, 404), (StudyConflict, 409), (StudyError, 422),
                               (JobsUnavailable, 503), (RegistryUnavailable, 503)):
        app.add_exception_handler(error, detail(status_code))

    @app.exception_handler(RequestValidationError)
    async def one_line_validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")) or "request"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        """A fault of the service itself: one JSON line for the caller, the traceback in the service's log."""
        incident = secrets.token_hex(4)
        logger.error("incident %s: %s %s failed", incident, request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"the service failed on its side (incident {incident}, in its log)"},
                            status_code=500)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError):
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unavailable"
        return JSONResponse({"detail": f"the study registry or Optuna storage is unavailable: {reason}"}, status_code=503)


def _no_unknown_query_parameters(request: Request) -> None:
    """A misspelt query parameter (`?stauts=running`) is an error, not a silently ignored filter."""
    route = request.scope.get("route")
    known = {p.alias for p in route.dependant.query_params} if route is not None else set()
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
        raise RequestValidationError([{"loc": ("query", unknown[0]), "msg": f"unknown query parameter; {takes}"}])


def _methods_for(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at `path` (what a 405's Allow header must list)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in app.routes:
        if getattr(route, "include_in_schema", True) and getattr(route, "methods", None):
            match, _ = route.matches({"type": "http", "path": path, "method": "GET"})
            if match != Match.NONE:
                methods |= set(route.methods)
    return sorted(methods)


def _openapi_with_bearer(app: FastAPI) -> dict:
    """FastAPI's document, declaring the bearer token every operation needs (the middleware enforces it)."""
    if app.openapi_schema is None:
        schema = app.openapi()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "the service's HPSEARCH_TOKEN"}
        }
        schema["security"] = [{"bearer": []}]
        # Validation errors are answered as one line (see one_line_validation_error), not FastAPI's list.
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "422" in operation.get("responses", {}):
                    operation["responses"]["422"] = {
                        "description": "invalid input",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        app.openapi_schema = schema
    return app.openapi_schema
