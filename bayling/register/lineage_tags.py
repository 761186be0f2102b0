"""Where a version's record for rebuilding it lives, beside its lineage tags: the register run's `lineage/`
artifacts (the dvc.lock and params.yaml it was built from) and the DVC remote tag, which must carry no
credentials. Register writes them (bayling/register/run.py); flows.reproduce reads them (bayling/reproduce)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

LINEAGE_ARTIFACTS = "lineage"  # folder of the register run holding dvc.lock and params.yaml
REMOTE_TAG = "dvc.remote"


def public_url(url: str | None) -> str | None:
    """A remote URL without user info, query or fragment: a tag anyone with read access sees must not carry a
    token (`user:token@`, or a signature such as `?sig=`). The host and port stay as written: parsing the port
    would fail on a malformed one, and an IPv6 host keeps its brackets."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: nothing can be told apart from a token, so no tag
        return None
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))
