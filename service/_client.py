"""`RemoteStudies`: the study verbs asked of a cluster's hpsearch API over HTTP (the CLI's `--server`).

Errors a user can fix (the server unreachable, a refused token, a study that does not exist, a space the
server rejects) are `ServerUserError`, which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import os
from typing import Optional
from urllib.parse import quote

import httpx

from service._errors import StudyError


class ServerUserError(StudyError):
    """A failed request the user can act on."""


class ServerError(Exception):
    """The service failed on its side (HTTP 5xx other than 503)."""


class RemoteStudies:
    def __init__(self, server: str, token: Optional[str], timeout_s: float = 30.0):
        if not server.startswith(("http://", "https://")):
            raise ServerUserError(
                f"--server {server!r} is not a URL; give it as http://HOST:PORT (e.g. http://127.0.0.1:8000)"
            )
        if not token:
            raise ServerUserError(
                f"no token for the hpsearch server at {server}: set HPSEARCH_TOKEN to the token the service was "
                f"started with (HPSEARCH_TOKEN in the cluster's .env)"
            )
        self.server = server.rstrip("/")
        self._http = httpx.Client(base_url=self.server, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)

    # -- the verbs -------------------------------------------------------------------------------------
    def submit(self, space, *, warm_start: Optional[str] = None, register: Optional[str] = None) -> dict:
        return self._call("POST", "/studies", json={
            "space": space.text, "filename": os.path.basename(space.source), "overrides": list(space.overrides),
            "warm_start": warm_start, "register_model": register,
        })

    def list(self, status: Optional[str] = None, limit: int = 100) -> list[dict]:
        params = {"limit": limit, **({"status": status} if status else {})}
        return self._call("GET", "/studies", params=params)["studies"]

    def status(self, study_id: str) -> dict:
        return self._call("GET", f"/studies/{_quote(study_id)}")

    def logs(self, study_id: str, offset: int = 0) -> dict:
        return self._call("GET", f"/studies/{_quote(study_id)}/logs", params={"offset": offset})

    def stop(self, study_id: str, force: bool = False) -> dict:
        return self._call("POST", f"/studies/{_quote(study_id)}/stop", params={"force": "true"} if force else None)

    def resume(self, study_id: str, register: Optional[str] = None) -> dict:
        return self._call("POST", f"/studies/{_quote(study_id)}/resume")

    def best(self, study_id: str) -> dict:
        return self._call("GET", f"/studies/{_quote(study_id)}/best")

    def delete(self, study_id: str) -> dict:
        return self._call("DELETE", f"/studies/{_quote(study_id)}")

    # -- transport -------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUserError(
                f"cannot reach the hpsearch server at {self.server} ({_reason(exc)}); check --server / "
                f"HPSEARCH_SERVER and that the service runs (`docker compose ps`, or `scripts/local-cluster status`)"
            ) from None
        if response.status_code == 401:
            raise ServerUserError(
                f"the hpsearch server at {self.server} refused the token; set HPSEARCH_TOKEN to the token the "
                f"service was started with"
            )
        if response.is_success:
            return response.json()
        detail = _detail(response)
        if response.status_code < 500 or response.status_code == 503:
            raise ServerUserError(detail)
        raise ServerError(f"the hpsearch server at {self.server} failed ({response.status_code}): {detail}")


def _quote(study_id: str) -> str:
    return quote(study_id, safe="")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else f"HTTP {response.status_code}: {response.text[:200]}"


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    for known in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if known.lower() in text.lower():
            return known
    return text.splitlines()[0][:120] if text else type(exc).__name__
