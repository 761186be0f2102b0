"""The texts of the file-based test sets of evaluate.test_sets, read one way for every stage that needs them.

Evaluate scores them, synthesize removes training text that overlaps them (decontamination), and the tokenizer
audit measures what they cost each language; each reads the same files through here, so the three cannot
disagree on what a test set holds. Three kinds are files: WMT-style (a source file and reference files for one
direction), FLORES-style (a folder with one file per language, inside an archive or not) and lexically
constrained (one JSONL file for one direction, BayLing's format: each row a source, a reference and the terms
the translation must contain); the held-out split is synthesize's own output and is read by evaluate alone.

bayling.core sits below bayling.config, so a set is anything with the fields of
bayling.config.evaluate.EvalTestSet (the FileTestSet protocol), not that class itself.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bayling.core.archives import data_root
from bayling.core.errors import PipelineError
from bayling.core.jsonl import RepeatedKeyError, loads_strict

FILE_KINDS = ("constrained", "flores", "wmt")


class FileTestSet(Protocol):
    """The fields of bayling.config.evaluate.EvalTestSet that locate a set's files."""

    name: str
    kind: str
    directions: str | Sequence[str]  # flores: the directions evaluated
    direction: str | None  # wmt, constrained
    src: str | None  # wmt; constrained: the JSONL file
    refs: Sequence[str]  # wmt
    dir: str | None  # flores
    archive: str | None  # flores
    pattern: str  # flores


@dataclass(frozen=True)
class DirectionTexts:
    """One direction of a test set: its source segments and each reference stream, line for line."""

    direction: str
    sources: list[str]
    references: list[list[str]]


def read_segments(path: str | Path, role: str = "file", warnings: list[str] | None = None, allow_blank: bool = False) -> list[str]:
    """One segment per line, strictly: undecodable bytes and empty files are errors naming the file.

    A UTF-8 byte-order mark is dropped (with a warning in `warnings`, when given); with `allow_blank`, a
    file of blank lines is read as that many empty segments instead of refused.
    """
    path = Path(path)
    data = _file_bytes(path, role, "one segment per line", warnings)
    if not data.strip() and not (allow_blank and data):
        raise PipelineError(f"{role} {path}: file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PipelineError(f"{role} {path}: line {line} is not valid UTF-8 (byte {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _file_bytes(path: Path, role: str, holds: str, warnings: list[str] | None = None) -> bytes:
    """The bytes of a regular file, a UTF-8 byte-order mark dropped (with a warning in `warnings`, when given)."""
    if path.is_dir():
        raise PipelineError(f"{role} {path}: is a folder, not a file: name the file itself ({holds})")
    if not path.exists():
        raise PipelineError(f"{role} {path}: file not found")
    if not path.is_file():  # a FIFO or device: reading it could block or never end
        raise PipelineError(f"{role} {path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PipelineError(f"{role} {path}: cannot be read ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        if warnings is not None:
            warnings.append(f"{role} {path} starts with a UTF-8 byte-order mark; it was dropped")
    return data


@dataclass(frozen=True)
class ConstrainedRow:
    """One row of a lexically constrained test set: line `line` of its file."""

    line: int
    source: str
    reference: str
    terms: tuple[str, ...]  # what the translation must contain, in the file's order (a term listed twice counts twice)


def _text_field(row: dict, name: str) -> str:
    if name not in row:
        raise ValueError(f"field '{name}': missing")
    value = row[name]
    if not isinstance(value, str):
        raise ValueError(f"field '{name}': a string is needed, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"field '{name}': empty")
    return value


def _terms(row: dict) -> tuple[str, ...]:
    if "constraint" not in row:
        raise ValueError("field 'constraint': missing (the list of terms the translation must contain)")
    terms = row["constraint"]
    if not isinstance(terms, list):
        raise ValueError(f"field 'constraint': a list of terms is needed, not {type(terms).__name__}")
    if not terms:
        raise ValueError("field 'constraint': no terms: a constrained item needs at least one")
    for i, term in enumerate(terms, start=1):
        if not isinstance(term, str):
            raise ValueError(f"field 'constraint': term {i} is {type(term).__name__}, not a string")
        if not term.strip():
            raise ValueError(f"field 'constraint': term {i} is empty (an empty term is in every output)")
    return tuple(terms)


def read_constrained(path: str | Path, role: str = "file") -> list[ConstrainedRow]:
    """Every row of a lexically constrained set's JSONL, BayLing's format (ictnlp/BayLing
    data/constrained_translation): {"src": source, "tgt": reference, "constraint": [term, ...]}. Blank lines are
    skipped; anything else that is not such a row is an error naming the file, the line and the field."""
    path = Path(path)
    data = _file_bytes(path, role, 'one JSON row per line: {"src", "tgt", "constraint"}')
    if not data.strip():
        raise PipelineError(f"{role} {path}: file is empty")
    rows = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PipelineError(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start + 1} of the line): save the file as UTF-8") from None
        try:
            row = loads_strict(text)
        except RepeatedKeyError as exc:
            raise PipelineError(f"{path}:{lineno}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{path}:{lineno}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise PipelineError(f"{path}:{lineno}: a JSON object is needed, not {type(row).__name__} "
                                '(a row is {"src": ..., "tgt": ..., "constraint": [...]})')
        try:
            rows.append(ConstrainedRow(lineno, _text_field(row, "src"), _text_field(row, "tgt"), _terms(row)))
        except ValueError as exc:
            raise PipelineError(f"{path}:{lineno}: {exc}") from None
    return rows


def _require_files(spec: FileTestSet) -> None:
    if spec.kind not in FILE_KINDS:
        raise PipelineError(f"test set {spec.name} is of kind {spec.kind}, not a set of files ({', '.join(FILE_KINDS)})")


def _folder(spec: FileTestSet, root: Path) -> Path:
    return data_root(spec.archive, root) / (spec.dir or "")  # an absolute dir stays absolute


def _wmt_texts(spec: FileTestSet, root: Path) -> DirectionTexts:
    sources = read_segments(root / (spec.src or ""), f"test set {spec.name} source")
    references = [read_segments(root / ref, f"test set {spec.name} reference") for ref in spec.refs]
    for ref_path, stream in zip(spec.refs, references):
        if len(stream) != len(sources):
            raise PipelineError(f"test set {spec.name}: {spec.src} has {len(sources)} lines but {ref_path} has {len(stream)}")
    return DirectionTexts(spec.direction or "", sources, references)


def _flores_languages(spec: FileTestSet, root: Path) -> dict[str, list[str]]:
    """Each language of the set's directions, in the order they first appear there, read from its file."""
    folder = _folder(spec, root)
    texts: dict[str, list[str]] = {}
    for direction in spec.directions:
        for code in direction.split("-"):
            if code not in texts:
                texts[code] = read_segments(folder / spec.pattern.format(code=code), f"test set {spec.name} ({code})")
    if len({len(v) for v in texts.values()}) > 1:
        raise PipelineError(
            f"test set {spec.name}: files in {folder} differ in length: " + ", ".join(f"{c} {len(v)}" for c, v in texts.items())
        )
    return texts


def constrained_rows(spec: FileTestSet, root: Path) -> list[ConstrainedRow]:
    """Every row of a lexically constrained set (its one direction is `spec.direction`)."""
    if spec.kind != "constrained":
        raise PipelineError(f"test set {spec.name} is of kind {spec.kind}, not a lexically constrained set")
    return read_constrained(root / (spec.src or ""), f"test set {spec.name}")


def _constrained_texts(spec: FileTestSet, root: Path) -> DirectionTexts:
    rows = constrained_rows(spec, root)
    return DirectionTexts(spec.direction or "", [r.source for r in rows], [[r.reference for r in rows]])


def direction_texts(spec: FileTestSet, root: Path) -> list[DirectionTexts]:
    """Source and reference segments of each direction of a file-based set, every line of its files (a constrained
    set's terms are in `constrained_rows`)."""
    _require_files(spec)
    if spec.kind == "wmt":
        return [_wmt_texts(spec, root)]
    if spec.kind == "constrained":
        return [_constrained_texts(spec, root)]
    texts = _flores_languages(spec, root)
    return [DirectionTexts(direction, texts[direction.split("-")[0]], [texts[direction.split("-")[1]]])
            for direction in spec.directions]


def parallel_rows(spec: FileTestSet, root: Path) -> list[dict[str, str]]:
    """The set as rows of parallel text, {language: segment}: a FLORES-style set's languages (those of its
    directions, in code order) line by line; a WMT-style set's source beside its first reference, a constrained
    set's source beside its reference."""
    _require_files(spec)
    if spec.kind in ("wmt", "constrained"):
        texts = _wmt_texts(spec, root) if spec.kind == "wmt" else _constrained_texts(spec, root)
        src, tgt = texts.direction.split("-")
        columns = {src: texts.sources, tgt: texts.references[0]}
    else:
        languages = _flores_languages(spec, root)
        columns = {code: languages[code] for code in sorted(languages)}
    size = min(len(v) for v in columns.values())
    return [{code: column[i] for code, column in columns.items()} for i in range(size)]


def set_files(spec: FileTestSet, root: Path) -> list[Path]:
    """Every file a set holds: a WMT-style set's source and references; a constrained set's JSONL; a FLORES-style
    set's file for every language in its folder (matching its pattern), not only those of the directions evaluated now."""
    _require_files(spec)
    if spec.kind == "wmt":
        return [root / (spec.src or ""), *(root / ref for ref in spec.refs)]
    if spec.kind == "constrained":
        return [root / (spec.src or "")]
    folder = _folder(spec, root)
    before, after = spec.pattern.split("{code}", 1)
    files = sorted(Path(p) for p in glob.glob(str(Path(glob.escape(str(folder))) / (glob.escape(before) + "*" + glob.escape(after)))))
    if not files:
        raise PipelineError(f"test set {spec.name}: no file matches {spec.pattern} in {folder}")
    return files


def every_segment(spec: FileTestSet, root: Path) -> Iterator[str]:
    """Every line of every file of the set (blank ones too), all of it, whatever max_segments evaluates; of a
    constrained set, every row's source, then every row's reference (its lines are JSON, not segments)."""
    if spec.kind == "constrained":
        rows = constrained_rows(spec, root)
        yield from (r.source for r in rows)
        yield from (r.reference for r in rows)
        return
    for path in set_files(spec, root):
        yield from read_segments(path, f"test set {spec.name}")
