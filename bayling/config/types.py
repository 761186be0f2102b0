"""Building blocks every section schema uses: the strict base model and validated value types."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from posixpath import normpath
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bayling.core.languages import is_known, unknown_code_message


class Section(BaseModel):
    """A params section: unknown keys are errors, values are frozen once validated."""

    # strict: YAML already gives every value its type, so `true` is no integer and "3" no number; no inf or nan either
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _check_code(code: str) -> str:
    if not is_known(code):
        raise ValueError(unknown_code_message(code))
    return code


def _check_direction(direction: str) -> str:
    parts = direction.split("-")
    if len(parts) != 2:
        raise ValueError(f"direction '{direction}' must look like 'eng_Latn-fra_Latn'")
    for code in parts:
        _check_code(code)
    if parts[0] == parts[1]:
        raise ValueError(f"direction '{direction}' translates a language into itself")
    return direction


def archive_escape(field: str, path: str, archive: str) -> str | None:
    """Why `path`, read inside the unpacked `archive`, would reach outside it (absolute, or climbing above its top
    with '..'), or None when it stays inside. Lexical, as the unpacked folder holds no links out of it (archives.py)."""
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute():
        return f"{field} '{path}' leaves the archive {archive}: it is absolute; give a path inside the archive"
    if normpath(path).split("/")[0] == "..":
        return f"{field} '{path}' leaves the archive {archive}: it climbs above the archive's top with '..'; give a path inside it"
    return None


LangCode = Annotated[str, AfterValidator(_check_code)]
Direction = Annotated[str, AfterValidator(_check_direction)]
Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
UnitFloat = Annotated[float, Field(ge=0, le=1)]


class EndpointParams(Section):
    """An OpenAI-compatible chat endpoint (the synthesis teacher, the BayLing-80 judge, served evaluation)."""

    enabled: bool = False
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "teacher"
    api_key_env: str | None = "TEACHER_API_KEY"  # the *name* of the variable holding the key
    max_concurrency: PositiveInt = 4
    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    max_retries: NonNegativeInt = 4  # the openai SDK's retries (exponential backoff with jitter)
    max_tokens: PositiveInt = 256
    cache_path: str = ".cache/teacher.sqlite"
