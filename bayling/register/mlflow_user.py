"""Who is acting on the registry, as the MLflow server knows them.

The identity is the MLflow user of the credentials in use (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD), as the server's basic-auth app reports it (`/users/current`). A server
without the auth app, or a local tracking store, has no users: the identity is then the OS user,
recorded as unauthenticated. Register records it as `registered_by`; approvals (bayling/approvals/identity.py)
asks the same app what each user may do.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from bayling.core.errors import PipelineError


@dataclass(frozen=True)
class Identity:
    name: str
    authenticated: bool
    is_admin: bool = False

    def describe(self) -> str:
        return self.name if self.authenticated else f"{self.name} (unauthenticated)"


def _auth() -> tuple[str, str] | None:
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return (user, password) if user and password else None


def server_get(tracking_uri: str, path: str, params: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import requests

    try:
        return requests.get(tracking_uri.rstrip("/") + path, params=params, auth=_auth(), timeout=30)
    except requests.RequestException as exc:
        raise PipelineError(f"cannot reach MLflow at {tracking_uri}: {type(exc).__name__}") from None


def current_identity(tracking_uri: str) -> Identity:
    """The identity the server authenticates these credentials as (the OS user where nobody authenticates)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return Identity(getpass.getuser(), authenticated=False)
    response = server_get(tracking_uri, "/api/2.0/mlflow/users/current")
    if response.status_code == 404:  # no basic-auth app on this server
        return Identity(getpass.getuser(), authenticated=False)
    if response.status_code == 401 and _auth() is None:
        raise PipelineError(f"MLflow at {tracking_uri} asks who you are: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                            "to your own MLflow account")
    if response.status_code == 401:
        raise PipelineError(f"MLflow at {tracking_uri} refused the credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD")
    if response.status_code != 200:
        raise PipelineError(f"MLflow at {tracking_uri} answered {response.status_code} when asked who is signed in")
    user = response.json()["user"]
    return Identity(user["username"], authenticated=True, is_admin=bool(user.get("is_admin")))
