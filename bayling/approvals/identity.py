"""What the MLflow server lets a user do with the registered model, and who may decide on its versions.

Who the user is comes from bayling/register/mlflow_user.py. Permissions are read from the server's
basic-auth app (`/users/permissions/get`), which resolves grants and the server's default exactly as it
does when it authorises a request.
"""

from __future__ import annotations

import unicodedata

from bayling.core.errors import PipelineError
from bayling.register.mlflow_user import Identity, current_identity, server_get

# What an approver must hold on the registered model. The basic-auth app lets EDIT move an alias, but
# EDIT is also what the pipeline's own account needs to register versions and tag them: if EDIT could
# approve, whoever can produce a candidate could also crown it. MANAGE is the level that administers
# the model (grants, deletions), so an approval needs it.
APPROVER_PERMISSION = "MANAGE"
PERMISSION_LEVELS = {"DENY": -1, "NO_PERMISSIONS": 0, "READ": 1, "USE": 2, "EDIT": 3, "MANAGE": 4}
MAX_DISPLAY_NAME = 100
MAX_NOTE = 2000


def permission_on(tracking_uri: str, username: str, resource_type: str, resource_id: str) -> str:
    """The permission the server resolves for `username` on a resource (`registered_model` by name,
    `experiment` by id): READ, EDIT, MANAGE, ... Anyone may ask about themselves; asking about another user
    needs an admin's credentials."""
    response = server_get(tracking_uri, "/api/3.0/mlflow/users/permissions/get",
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
    response = server_get(tracking_uri, "/api/2.0/mlflow/users/list")
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
    if PERMISSION_LEVELS.get(permission, 0) >= PERMISSION_LEVELS[APPROVER_PERMISSION]:
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
    response = server_get(tracking_uri, "/api/2.0/mlflow/users/get", {"username": username})
    if response.status_code != 200:
        return None, f"MLflow has no user {username!r}"
    claimed = Identity(username, authenticated=True, is_admin=bool(response.json()["user"].get("is_admin")))
    allowed, reason = may_approve(claimed, tracking_uri, model_name)
    return (claimed, reason) if allowed else (None, reason)
