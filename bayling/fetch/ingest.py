"""Normalising parallel text (line-aligned files, TSV, JSONL) into the canonical multi-parallel corpus,
quarantining every bad line with its file, line and field."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError
from bayling.core.jsonl import RepeatedKeyError, loads_strict
from bayling.core.languages import is_known, unknown_code_message
from bayling.core.quarantine import Problem, Quarantined
from bayling.core.records import CorpusRow
from bayling.core.textio import iter_lines, unsafe_character

RAW_PREVIEW_CHARS = 300


@dataclass(frozen=True)
class HeaderRow:
    """A TSV header naming the configured columns: not data, counted apart from the rows."""

    source: str
    file: str
    line: int


Record = CorpusRow | Quarantined | HeaderRow


def normalize_text(text: str) -> str:
    """NFC, every run of whitespace (tabs, newlines included) to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _preview(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "…"


def _decode(raw: bytes, lineno: int) -> tuple[str | None, Problem | None]:
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Problem(None, f"invalid UTF-8 at byte {exc.start}")


def check_texts(texts: Any, required: Iterable[str] = ()) -> tuple[dict[str, str], list[Problem]]:
    """Validate a {language: text} mapping; return the normalised texts and every problem found."""
    if not isinstance(texts, dict):
        return {}, [Problem("texts", "must be an object mapping FLORES-200 codes to text")]
    problems: list[Problem] = []
    clean: dict[str, str] = {}
    for code, text in texts.items():
        if not is_known(code):
            problems.append(Problem(f"texts.{code}", unknown_code_message(code)))
        elif not isinstance(text, str):
            problems.append(Problem(f"texts.{code}", "text must be a string"))
        elif reason := unsafe_character(text):
            problems.append(Problem(f"texts.{code}", reason))
        elif not normalize_text(text):
            problems.append(Problem(f"texts.{code}", "empty text"))
        else:
            clean[code] = normalize_text(text)
    for code in required:
        if code not in texts:
            problems.append(Problem(f"texts.{code}", "missing language"))
    if not problems and len(clean) < 2:
        problems.append(Problem("texts", "needs text in at least two languages"))
    return clean, problems


def parse_jsonl_line(source: str, file: str, lineno: int, raw: bytes, required: Iterable[str] = ()) -> Record:
    text, problem = _decode(raw, lineno)
    if problem:
        return Quarantined(source, file, lineno, (problem,), _preview(raw))
    if not text.strip():
        return Quarantined(source, file, lineno, (Problem(None, "blank line"),), "")
    try:
        obj = loads_strict(text)
    except json.JSONDecodeError as exc:
        return Quarantined(source, file, lineno, (Problem(None, f"invalid JSON: {exc.msg} at column {exc.colno}"),), _preview(raw))
    except RepeatedKeyError as exc:
        return Quarantined(source, file, lineno, (Problem(None, str(exc)),), _preview(raw))
    if not isinstance(obj, dict):
        return Quarantined(source, file, lineno, (Problem(None, "row must be a JSON object"),), _preview(raw))
    problems: list[Problem] = []
    row_id = obj.get("id", lineno)
    if not isinstance(row_id, (str, int)) or isinstance(row_id, bool) or str(row_id).strip() == "":
        problems.append(Problem("id", "must be a non-empty string"))
    if "texts" not in obj:
        problems.append(Problem("texts", "missing field"))
        texts: dict[str, str] = {}
    else:
        texts, text_problems = check_texts(obj["texts"], required)
        problems.extend(text_problems)
    if problems:
        return Quarantined(source, file, lineno, tuple(problems), _preview(raw))
    return CorpusRow(f"{source}:{row_id}", source, texts, file, lineno)


def parse_tsv_line(source: str, file: str, lineno: int, raw: bytes, columns: list[str]) -> Record:
    text, problem = _decode(raw, lineno)
    if problem:
        return Quarantined(source, file, lineno, (problem,), _preview(raw))
    cells = text.split("\t")
    if len(cells) != len(columns):
        reason = f"expected {len(columns)} tab-separated columns ({', '.join(columns)}), found {len(cells)}"
        return Quarantined(source, file, lineno, (Problem(None, reason),), _preview(raw))
    texts, problems = check_texts(dict(zip(columns, cells)), columns)
    if problems:
        return Quarantined(source, file, lineno, tuple(problems), _preview(raw))
    return CorpusRow(f"{source}:{lineno}", source, texts, file, lineno)


def parse_parallel_line(source: str, files: dict[str, str], lineno: int, raws: dict[str, bytes]) -> Record:
    problems: list[Problem] = []
    decoded: dict[str, str] = {}
    for code, raw in raws.items():
        text, problem = _decode(raw, lineno)
        if problem:
            problems.append(Problem(f"texts.{code}", f"{problem.reason} in {files[code]}"))
        else:
            decoded[code] = text
    texts, text_problems = check_texts(decoded, [c for c in raws if c in decoded])
    problems.extend(text_problems)
    label = ",".join(files.values())
    if problems:
        preview = " ||| ".join(_preview(raws[c]) for c in raws)
        return Quarantined(source, label, lineno, tuple(problems), preview[: RAW_PREVIEW_CHARS * 2])
    return CorpusRow(f"{source}:{lineno}", source, texts, label, lineno)


def parse_source(
    name: str,
    fmt: str,
    paths: dict[str, Path],
    labels: dict[str, str],
    *,
    columns: list[str] | None = None,
    required: list[str] | None = None,
    max_rows: int | None = None,
) -> Iterator[Record]:
    """Records of one source, streamed. `paths`/`labels` are keyed by language (parallel) or 'file'."""
    if fmt == "parallel":
        counts = {code: sum(1 for _ in iter_lines(path)) for code, path in paths.items()}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{labels[c]} has {n} lines" for c, n in counts.items())
            raise PipelineError(f"source '{name}': parallel files are not line-aligned: {detail}")
        codes = list(paths)
        for i, lines in enumerate(zip(*(iter_lines(paths[c]) for c in codes))):
            if max_rows is not None and i >= max_rows:
                return
            lineno = lines[0][0]
            yield parse_parallel_line(name, labels, lineno, {c: raw for c, (_, raw) in zip(codes, lines)})
        return
    (path,) = paths.values()
    (label,) = labels.values()
    for i, (lineno, raw) in enumerate(iter_lines(path)):
        if max_rows is not None and i >= max_rows:
            return
        if fmt == "jsonl":
            yield parse_jsonl_line(name, label, lineno, raw, required or [])
        elif fmt == "tsv" and i == 0 and _is_header(raw, columns or []):
            yield HeaderRow(name, label, lineno)
        elif fmt == "tsv":
            yield parse_tsv_line(name, label, lineno, raw, columns or [])
        else:
            raise PipelineError(f"source '{name}': unknown format '{fmt}'")


def _is_header(raw: bytes, columns: list[str]) -> bool:
    """The first line names the columns: their FLORES-200 codes, or the languages' names or ISO codes."""
    from bayling.core.languages import get_language

    cells = [c.strip().casefold() for c in raw.decode("utf-8", errors="replace").split("\t")]
    if len(cells) != len(columns):
        return False
    names = [{code.casefold(), get_language(code).name.casefold(), code.split("_")[0]} | (
        {get_language(code).iso639_1} if get_language(code).iso639_1 else set()) for code in columns]
    return all(cell in accepted for cell, accepted in zip(cells, names))


def _content_key(texts: dict[str, str]) -> bytes:
    return hashlib.blake2b(json.dumps(texts, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).digest()


@dataclass
class CorpusBuilder:
    """Applies corpus-wide rules (unique ids, optional de-duplication) and keeps the books balanced."""

    dedupe: bool = True
    _ids: set[str] = field(default_factory=set)
    _content: dict[bytes, str] = field(default_factory=dict)
    stats: dict[str, Counter] = field(default_factory=dict)

    def admit(self, record: Record) -> Record:
        source = record.source
        counter = self.stats.setdefault(source, Counter())
        if isinstance(record, HeaderRow):
            counter["header_rows_skipped"] += 1
            return record
        counter["rows_in"] += 1
        if isinstance(record, CorpusRow):
            problem = None
            if record.id in self._ids:
                problem = Problem("id", f"duplicate id '{record.id}'")
            elif self.dedupe:
                key = _content_key(record.texts)
                if key in self._content:
                    problem = Problem(None, f"duplicate of {self._content[key]}")
                else:
                    self._content[key] = record.id
            if problem:
                raw = json.dumps(record.texts, ensure_ascii=False)[: RAW_PREVIEW_CHARS * 2]
                record = Quarantined(source, record.file, record.line, (problem,), raw)
            else:
                self._ids.add(record.id)
        if isinstance(record, Quarantined):
            counter["rows_quarantined"] += 1
            counter[f"reason:{_reason_class(record.problems[0].reason)}"] += 1
        else:
            counter["rows_kept"] += 1
        return record


def _reason_class(reason: str) -> str:
    """A short, countable label for a problem ('invalid JSON: Expecting value…' -> 'invalid JSON')."""
    for prefix in ("invalid UTF-8", "invalid JSON", "duplicate of", "duplicate id", "unknown FLORES-200", "expected", "repeated key",
                   "control character", "bidi control"):
        if reason.startswith(prefix):
            return {"expected": "wrong column count", "unknown FLORES-200": "unknown language"}.get(prefix, prefix)
    return reason
