"""Decontamination: find training text that overlaps an evaluation set by n-gram or by whole sentence.

The sets are evaluate.test_sets named in synthesize.decontamination.against, read by bayling.core.test_sets
as evaluate reads them (every segment of their files), and any `extra` sets of lines or JSON rows.

Spaced scripts are compared on words, scripts written without spaces on characters. Sentences are
compared after normalisation (case, punctuation, width and spacing folded). The index holds hashes
only, so large evaluation sets stay small in memory. Written here because the n-gram decontamination
tools in the ecosystem split on whitespace only, which finds nothing in Chinese, Japanese or Thai.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

from bayling.config.evaluate import EvalTestSet
from bayling.config.synthesize import DecontaminationParams
from bayling.core.archives import data_root
from bayling.core.errors import PipelineError
from bayling.core.test_sets import every_segment
from bayling.synthesize.quality import digest, normalized_key, script_profile

log = logging.getLogger(__name__)

# Character scripts (as script_profile names them) whose text has no spaces between words.
_UNSPACED_CHARACTER_SCRIPTS = {"Hani", "Hira", "Kana", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}


def tokens(text: str) -> list[str]:
    """Words, or characters when most letters belong to a script written without spaces."""
    key = normalized_key(text)
    profile = script_profile(key)
    letters = sum(profile.values())
    if letters and sum(profile[s] for s in _UNSPACED_CHARACTER_SCRIPTS) / letters >= 0.5:
        return [ch for ch in key if not ch.isspace()]
    return key.split()


def ngram_digests(text: str, n: int) -> Iterator[bytes]:
    toks = tokens(text)
    for i in range(len(toks) - n + 1):
        yield digest("\x1f".join(toks[i : i + n]))


@dataclass
class Decontaminator:
    n: int = 13
    _sentences: dict[bytes, str] = field(default_factory=dict)
    _ngrams: dict[bytes, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, texts: Iterable[str]) -> None:
        count = 0
        for text in texts:
            key = normalized_key(text)
            if not key:
                continue
            count += 1
            self._sentences.setdefault(digest(key), name)
            for gram in ngram_digests(text, self.n):
                self._ngrams.setdefault(gram, name)
        self.sizes[name] = self.sizes.get(name, 0) + count

    def match(self, text: str) -> tuple[str, str] | None:
        """(evaluation set, "sentence" | "ngram") for the first overlap found, or None."""
        key = normalized_key(text)
        if not key:
            return None
        hit = self._sentences.get(digest(key))
        if hit:
            return hit, "sentence"
        for gram in ngram_digests(text, self.n):
            hit = self._ngrams.get(gram)
            if hit:
                return hit, f"{self.n}-gram"
        return None


def strings_in(value: object, fields: tuple[str, ...]) -> Iterator[str]:
    """Every string under the named fields of a JSON row: plain strings, lists of them, or chat messages."""
    if isinstance(value, dict):
        for key in fields:
            if key in value:
                yield from strings_in(value[key], ("content",) + fields)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item, fields)
    elif isinstance(value, str):
        yield value


def read_eval_texts(paths: Iterable[Path], fmt: str, fields: tuple[str, ...]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if fmt == "lines":
                    if line.strip():
                        yield line.rstrip("\n")
                else:
                    if line.strip():
                        yield from strings_in(json.loads(line), fields)


def load_decontaminator(params: DecontaminationParams, test_sets: Sequence[EvalTestSet], root: Path) -> Decontaminator | None:
    """The index of the named evaluate.test_sets, then of the extra sets; None when there is none."""
    if not params.against and not params.extra:
        return None
    index = Decontaminator(n=params.ngram)
    by_name = {spec.name: spec for spec in test_sets}
    for name in params.against:
        if name not in by_name:  # the loader refuses such params first; a library caller may not have used it
            raise PipelineError(f"synthesize.decontamination.against: '{name}' is not a test set of evaluate.test_sets")
        index.add(name, every_segment(by_name[name], root))
    for extra in params.extra:
        base = data_root(extra.archive, root)
        paths = sorted({p for pattern in extra.paths for p in glob(str(base / pattern), recursive=True)})
        if not paths:
            where = f" in {extra.archive}" if extra.archive else ""
            raise PipelineError(f"decontamination set '{extra.name}': no file matches {extra.paths}{where}")
        index.add(extra.name, read_eval_texts(map(Path, paths), extra.format, tuple(extra.fields)))
    log.info("decontamination index: %s", ", ".join(f"{k} ({v} segments)" for k, v in index.sizes.items()))
    return index
