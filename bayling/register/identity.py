"""Who is acting on the registry, as the MLflow server knows them, and what it lets them do.

The identity is the MLflow user of the credentials in use (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD), as the server's basic-auth app reports it (`/users/current`). A server
without the auth app, or a local tracking store, has no users: the identity is then the OS user,
recorded as unauthenticated. Permissions are read from the same app (`/users/permissions/get`), which
resolves grants and the server's default exactly as it does when it authorises a request.
"""

from __future__ import annotations

import getpass
import os
import unicodedata
from dataclasses import dataclass

from bayling.core.errors import PipelineError

# What an approver must hold on the registered model. The basic-auth app lets EDIT move an alias, but
# EDIT is also what the pipeline's own account needs to register versions and tag them: if EDIT could
# approve, whoever can produce a candidate could also crown it. MANAGE is the level that administers
# the model (grants, deletions), so an approval needs it.
APPROVER_PERMISSION = "MANAGE"
_LEVELS = {"DENY": -1, "NO_PERMISSIONS": 0, "READ": 1, "USE": 2, "EDIT": 3, "MANAGE": 4}
MAX_DISPLAY_NAME = 100
MAX_NOTE = 2000


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


def _get(tracking_uri: str, path: str, params: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import requests

    try:
        return requests.get(tracking_uri.rstrip("/") + path, params=params, auth=_auth(), timeout=30)
    except requests.RequestException as exc:
        raise PipelineError(f"cannot reach MLflow at {tracking_uri}: {type(exc).__name__}") from None


def current_identity(tracking_uri: str) -> Identity:
    """The identity the server authenticates these credentials as (the OS user where nobody authenticates)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return Identity(getpass.getuser(), authenticated=False)
    response = _get(tracking_uri, "/api/2.0/mlflow/users/current")
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


def permission_on(tracking_uri: str, username: str, resource_type: str, resource_id: str) -> str:
    """The permission the server resolves for `username` on a resource (`registered_model` by name,
    `experiment` by id): READ, EDIT, MANAGE, ... Anyone may ask about themselves; asking about another user
    needs an admin's credentials."""
    response = _get(tracking_uri, "/api/3.0/mlflow/users/permissions/get",
                    {"username": username, "resource_type": resource_type, "resource_id": resource_id})
    if response.status_code == 403:
        raise PipelineError(f"the credentials in use may not read the permissions of MLflow user {username!r}")
    if response.status_code != 200:
        raise PipelineError(f"MLflow at {tracking_uri} answered {response.status_code} about {username!r}'s permission on "
                            f"{resource_type} {resource_id}")
    return str(response.json()["permission"])


def permission_on_model(tracking_uri: str, username: str, model_name: str) -> str:
    """The permission the server resolves for `username` on a registered model."""
    return permission_on(tracking_uri, username, "registered_model", model_name)


def list_usernames(tracking_uri: str) -> list[tuple[str, bool]]:
    """Every user of the server and whether they are an admin (needs an admin's credentials)."""
    response = _get(tracking_uri, "/api/2.0/mlflow/users/list")
    if response.status_code != 200:
        raise PipelineError(f"MLflow at {tracking_uri} answered {response.status_code} when asked for its users")
    return [(u["username"], bool(u.get("is_admin"))) for u in response.json().get("users", [])]


def may_approve(identity: Identity, tracking_uri: str, model_name: str) -> tuple[bool, str]:
    """Whether `identity` may decide on versions of the model, and why, as the server's permissions say."""
    if not identity.authenticated:
        return True, "the tracking server has no users: the decision is recorded as unauthenticated"
    if identity.is_admin:
        return True, f"{identity.name} is an MLflow admin"
    permission = permission_on_model(tracking_uri, identity.name, model_name)
    if _LEVELS.get(permission, 0) >= _LEVELS[APPROVER_PERMISSION]:
        return True, f"{identity.name} holds {permission} on {model_name}"
    return False, f"{identity.name} holds {permission} on registered model {model_name}; deciding needs {APPROVER_PERMISSION}"


def clean_text(value: str | None, what: str, limit: int, one_line: bool) -> str:
    """A display name or note as it may be stored: bounded, printable, one line where it must be."""
    value = (value or "").strip()
    if len(value) > limit:
        raise PipelineError(f"{what} is {len(value)} characters long; at most {limit} are kept on the record")
    allowed = set() if one_line else {"\n", "\t"}
    bad = next((ch for ch in value if unicodedata.category(ch)[0] == "C" and ch not in allowed), None)
    if bad is not None:
        kind = "a line break" if bad in "\r\n" else f"the control character U+{ord(bad):04X}"
        raise PipelineError(f"{what} contains {kind}; it must be {'one line of ' if one_line else ''}printable text")
    return value


def verify_claimed(tracking_uri: str, username: str, authenticated: bool, model_name: str) -> tuple[Identity | None, str]:
    """The identity a pause input names, checked with the credentials in use (the flow's, an admin's):
    the user must exist and may decide on the model. Returns (identity, reason) or (None, why not)."""
    own = current_identity(tracking_uri)
    if not own.authenticated:
        if authenticated:
            return None, "the input claims an authenticated user, but this tracking server has no users"
        return Identity(username, authenticated=False), "the tracking server has no users: recorded as unauthenticated"
    if not authenticated:
        return None, "the input names no authenticated MLflow user, and this tracking server authenticates its users"
    if not own.is_admin:
        return None, f"the flow's MLflow user {own.name} is not an admin, so it cannot check another user's permissions"
    response = _get(tracking_uri, "/api/2.0/mlflow/users/get", {"username": username})
    if response.status_code != 200:
        return None, f"MLflow has no user {username!r}"
    claimed = Identity(username, authenticated=True, is_admin=bool(response.json()["user"].get("is_admin")))
    allowed, reason = may_approve(claimed, tracking_uri, model_name)
    return (claimed, reason) if allowed else (None, reason)
