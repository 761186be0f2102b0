"""`fetch`: the corpus sources (local paths or s3:// URLs) and how strictly they are read."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from bayling.config.types import LangCode, PositiveInt, Section, Slug


class SourceParams(Section):
    name: Slug
    format: Literal["jsonl", "tsv", "parallel"]
    uri: str | None = None
    files: dict[LangCode, str] | None = None
    columns: list[LangCode] | None = None
    languages: list[LangCode] | None = None
    sha256: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = {}
    max_rows: PositiveInt | None = None

    @model_validator(mode="after")
    def _format_fields(self) -> SourceParams:
        problems = []
        if self.format == "parallel":
            if not self.files or len(self.files) < 2:
                problems.append("format 'parallel' needs 'files' with at least two languages")
            if self.uri:
                problems.append("format 'parallel' takes 'files', not 'uri'")
        else:
            if not self.uri:
                problems.append(f"format '{self.format}' needs 'uri'")
            if self.files:
                problems.append(f"format '{self.format}' takes 'uri', not 'files'")
        if self.format == "tsv" and (not self.columns or len(self.columns) < 2):
            problems.append("format 'tsv' needs 'columns' naming at least two languages")
        for uri in self.sha256:
            if uri not in self.uris():
                problems.append(f"sha256 is given for '{uri}', which is not one of this source's files")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def uris(self) -> list[str]:
        return list(self.files.values()) if self.files else ([self.uri] if self.uri else [])

    def keyed_uris(self) -> dict[str, str]:
        """{language: uri} for parallel files, {"file": uri} for a single-file source."""
        return dict(self.files) if self.files else {"file": self.uri or ""}


class FetchParams(Section):
    sources: Annotated[list[SourceParams], Field(min_length=1)]
    s3_endpoint_url: str | None = None
    dedupe: bool = True
    max_quarantine_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5

    @model_validator(mode="after")
    def _unique_names(self) -> FetchParams:
        names = [s.name for s in self.sources]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicated)}")
        return self
