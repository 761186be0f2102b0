"""The texts of the file-based test sets of evaluate.test_sets, read one way for every stage that needs them.

Evaluate scores them, synthesize removes training text that overlaps them (decontamination), and the tokenizer
audit measures what they cost each language; each reads the same files through here, so the three cannot
disagree on what a test set holds. Two kinds are files: WMT-style (a source file and reference files for one
direction) and FLORES-style (a folder with one file per language, inside an archive or not); the held-out
split is synthesize's own output and is read by evaluate alone.

bayling.core sits below bayling.config, so a set is anything with the fields of
bayling.config.evaluate.EvalTestSet (the FileTestSet protocol), not that class itself.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bayling.core.archives import data_root
from bayling.core.errors import PipelineError

FILE_KINDS = ("flores", "wmt")


class FileTestSet(Protocol):
    """The fields of bayling.config.evaluate.EvalTestSet that locate a set's files."""

    name: str
    kind: str
    directions: str | Sequence[str]  # flores: the directions evaluated
    direction: str | None  # wmt
    src: str | None  # wmt
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
    if path.is_dir():
        raise PipelineError(f"{role} {path}: is a folder, not a file: name the file itself (one segment per line)")
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


def direction_texts(spec: FileTestSet, root: Path) -> list[DirectionTexts]:
    """Source and reference segments of each direction of a file-based set, every line of its files."""
    _require_files(spec)
    if spec.kind == "wmt":
        return [_wmt_texts(spec, root)]
    texts = _flores_languages(spec, root)
    return [DirectionTexts(direction, texts[direction.split("-")[0]], [texts[direction.split("-")[1]]])
            for direction in spec.directions]


def parallel_rows(spec: FileTestSet, root: Path) -> list[dict[str, str]]:
    """The set as rows of parallel text, {language: segment}: a FLORES-style set's languages (those of its
    directions, in code order) line by line; a WMT-style set's source beside its first reference."""
    _require_files(spec)
    if spec.kind == "wmt":
        texts = _wmt_texts(spec, root)
        src, tgt = texts.direction.split("-")
        columns = {src: texts.sources, tgt: texts.references[0]}
    else:
        languages = _flores_languages(spec, root)
        columns = {code: languages[code] for code in sorted(languages)}
    size = min(len(v) for v in columns.values())
    return [{code: column[i] for code, column in columns.items()} for i in range(size)]


def set_files(spec: FileTestSet, root: Path) -> list[Path]:
    """Every file a set holds: a WMT-style set's source and references; a FLORES-style set's file for every
    language in its folder (matching its pattern), not only those of the directions evaluated now."""
    _require_files(spec)
    if spec.kind == "wmt":
        return [root / (spec.src or ""), *(root / ref for ref in spec.refs)]
    folder = _folder(spec, root)
    before, after = spec.pattern.split("{code}", 1)
    files = sorted(Path(p) for p in glob.glob(str(Path(glob.escape(str(folder))) / (glob.escape(before) + "*" + glob.escape(after)))))
    if not files:
        raise PipelineError(f"test set {spec.name}: no file matches {spec.pattern} in {folder}")
    return files


def every_segment(spec: FileTestSet, root: Path) -> Iterator[str]:
    """Every line of every file of the set (blank ones too), all of it, whatever max_segments evaluates."""
    for path in set_files(spec, root):
        yield from read_segments(path, f"test set {spec.name}")
