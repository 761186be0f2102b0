"""Tokenizer audit: what the base model's tokenizer costs each language of the corpus and the test sets.

Per language it reports fertility (tokens per character, and per word where words are space-separated),
the premium against English on the same parallel segments (Petrov et al., 2023: the number of tokens a
language needs for the content English says in one), the share of tokens that are not whole characters
(byte fallback in SentencePiece vocabularies, split UTF-8 sequences in byte-level BPE) or unknown, and
the share of training conversations that do not fit in max_seq_len. A language whose premium is above
the threshold is flagged: it costs more of the context and of the compute for the same content.
Its own stage (stages/audit.py), so editing evaluation settings re-runs the audit and not tokenize; the
test sets' texts come from bayling.core.test_sets, as evaluate reads them.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bayling.core.jsonl import iter_jsonl, write_json
from bayling.core.languages import get_language, is_known
from bayling.core.records import CorpusRow

ENGLISH = "eng_Latn"


@dataclass
class LanguageTally:
    segments: int = 0
    characters: int = 0
    words: int = 0
    tokens: int = 0
    partial_tokens: int = 0
    unknown_tokens: int = 0
    parallel_tokens: int = 0  # on segments whose English side is present too
    parallel_english_tokens: int = 0
    conversations: int = 0
    truncated: int = 0


@dataclass(frozen=True)
class LanguageAudit:
    language: str
    sources: tuple[str, ...]
    segments: int
    tokens_per_char: float
    tokens_per_word: float | None  # None for scripts written without spaces
    premium_vs_english: float | None  # None where no parallel English was seen
    partial_or_unknown_rate: float
    unknown_rate: float
    truncated_share: float | None  # None where no training conversation involves the language
    flagged: bool


@dataclass
class TokenizerAudit:
    tokenizer: str
    max_seq_len: int
    max_premium: float
    languages: list[LanguageAudit] = field(default_factory=list)

    @property
    def flagged(self) -> list[LanguageAudit]:
        return [lang for lang in self.languages if lang.flagged]

    def as_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "max_seq_len": self.max_seq_len, "max_premium": self.max_premium,
                "flagged": [lang.language for lang in self.flagged], "languages": [asdict(lang) for lang in self.languages]}


_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


class TokenCounter:
    """Token counts and the share of tokens that are not whole characters, cached per vocabulary id."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._partial: dict[int, bool] = {}

    def _is_partial(self, token_id: int) -> bool:
        """A SentencePiece byte-fallback token (<0xNN>), or a byte-level BPE token holding part of a character:
        alone it decodes to U+FFFD, and U+FFFD does not encode back to it (a token for U+FFFD itself would)."""
        if token_id not in self._partial:
            piece = self.tokenizer.convert_ids_to_tokens(token_id)
            text = self.tokenizer.decode([token_id])
            self._partial[token_id] = bool(_BYTE_FALLBACK.match(piece or "")) or (
                "\ufffd" in text and self.tokenizer(text, add_special_tokens=False)["input_ids"] != [token_id])
        return self._partial[token_id]

    def count(self, texts: Sequence[str]) -> list[tuple[int, int, int]]:
        """(tokens, partial tokens, unknown tokens) per text."""
        if not texts:
            return []
        unk = self.tokenizer.unk_token_id
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [(len(ids), sum(self._is_partial(i) for i in ids), sum(i == unk for i in ids) if unk is not None else 0)
                for ids in encoded]


def _words(text: str, language: str) -> int:
    return len(text.split()) if is_known(language) and not get_language(language).written_without_spaces else 0


def tally_parallel(counter: TokenCounter, rows: Iterable[Mapping[str, str]], tallies: dict[str, LanguageTally],
                   batch_size: int = 512) -> None:
    """Add rows of parallel text ({language: segment}) to the tallies, counting each row's English tokens
    as the baseline of the premium of its other languages."""
    batch: list[Mapping[str, str]] = []

    def flush() -> None:
        flat = [(i, lang, text) for i, row in enumerate(batch) for lang, text in row.items() if text.strip()]
        counts = counter.count([text for _, _, text in flat])
        english: dict[int, int] = {i: n for (i, lang, _), (n, _, _) in zip(flat, counts) if lang == ENGLISH}
        for (i, lang, text), (n, partial, unknown) in zip(flat, counts):
            tally = tallies.setdefault(lang, LanguageTally())
            tally.segments += 1
            tally.characters += len(text)
            tally.words += _words(text, lang)
            tally.tokens += n
            tally.partial_tokens += partial
            tally.unknown_tokens += unknown
            if i in english:
                tally.parallel_tokens += n
                tally.parallel_english_tokens += english[i]
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()


def tally_truncation(lengths: Iterable[tuple[Sequence[str], int]], max_seq_len: int, tallies: dict[str, LanguageTally]) -> None:
    """(languages of a conversation, its token length with the chat template) -> truncated share per language."""
    for languages, length in lengths:
        for lang in set(languages):
            tally = tallies.setdefault(lang, LanguageTally())
            tally.conversations += 1
            tally.truncated += int(length > max_seq_len)


def summarize(tallies: Mapping[str, LanguageTally], sources: Mapping[str, set[str]], *, tokenizer: str, max_seq_len: int,
              max_premium: float) -> TokenizerAudit:
    audit = TokenizerAudit(tokenizer=tokenizer, max_seq_len=max_seq_len, max_premium=max_premium)
    for lang in sorted(tallies):
        t = tallies[lang]
        premium = t.parallel_tokens / t.parallel_english_tokens if t.parallel_english_tokens else None
        audit.languages.append(LanguageAudit(
            language=lang,
            sources=tuple(sorted(sources.get(lang, ()))),
            segments=t.segments,
            tokens_per_char=round(t.tokens / t.characters, 4) if t.characters else 0.0,
            tokens_per_word=round(t.tokens / t.words, 4) if t.words else None,
            premium_vs_english=round(premium, 4) if premium is not None else None,
            partial_or_unknown_rate=round((t.partial_tokens + t.unknown_tokens) / t.tokens, 5) if t.tokens else 0.0,
            unknown_rate=round(t.unknown_tokens / t.tokens, 5) if t.tokens else 0.0,
            truncated_share=round(t.truncated / t.conversations, 4) if t.conversations else None,
            flagged=premium is not None and premium > max_premium,
        ))
    return audit


def write_audit(audit: TokenizerAudit, folder: Path) -> list[Path]:
    """audit.json, audit.csv (the DVC plot's data) and fertility.png in `folder`."""
    from bayling.core.plots import grouped_barh

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "audit.json", audit.as_dict())
    columns = ["language", "premium_vs_english", "tokens_per_char", "tokens_per_word", "partial_or_unknown_rate",
               "truncated_share", "flagged"]
    lines = [",".join(columns)]
    for lang in audit.languages:
        row = asdict(lang)
        lines.append(",".join("" if row[c] is None else str(row[c]).lower() if isinstance(row[c], bool) else str(row[c])
                              for c in columns))
    (folder / "audit.csv").write_text("\n".join(lines) + "\n", "utf-8")
    measured = [lang for lang in audit.languages if lang.premium_vs_english is not None]
    labels = [f"{lang.language}{' (!)' if lang.flagged else ''}" for lang in measured]
    grouped_barh(labels, {"tokens vs English (same content)": [lang.premium_vs_english or 0.0 for lang in measured]},
                 folder / "fertility.png", title=f"Tokenizer premium ({audit.tokenizer}); (!) above {audit.max_premium}",
                 xlabel="tokens / English tokens", size=(7, max(2.5, 0.4 * len(labels) + 1.2)))
    return [folder / "audit.json", folder / "audit.csv", folder / "fertility.png"]


def language_sources(entries: Iterable[tuple[str, Iterable[str]]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for source, languages in entries:
        for lang in languages:
            out[lang].add(source)
    return out


def languages_of(rows: Iterable[Mapping[str, str]]) -> Counter:
    counts: Counter = Counter()
    for row in rows:
        counts.update(row)
    return counts


def evaluation_rows(specs: Sequence[Any], root: Path) -> Iterable[tuple[str, list[dict[str, str]]]]:
    """(test set name, parallel rows) for file-based test sets (FLORES and WMT kinds) of evaluate.test_sets."""
    from bayling.core.test_sets import FILE_KINDS, parallel_rows

    for spec in specs:
        if spec.kind in FILE_KINDS:
            yield spec.name, parallel_rows(spec, root)


def audit_tokenizer(tokenizer: Any, renderer_tokenize: Any, *, corpus: Path, train: Path,
                    test_sets: Iterable[tuple[str, list[dict[str, str]]]], max_seq_len: int, max_premium: float,
                    name: str, max_rows: int | None = None) -> TokenizerAudit:
    """Audit over the raw corpus (parallel rows), the test sets and the synthesized training conversations,
    reading at most `max_rows` rows of each (the first ones), so its cost does not grow with the corpus.

    `renderer_tokenize(list of message lists) -> list of token counts` renders conversations exactly as the
    tokenize stage does, so the truncated share is what training will see.
    """
    counter = TokenCounter(tokenizer)
    tallies: dict[str, LanguageTally] = {}
    seen: list[tuple[str, Iterable[str]]] = []
    corpus_rows = [CorpusRow.from_json(row).texts for row in itertools.islice(iter_jsonl(corpus), max_rows)]
    tally_parallel(counter, corpus_rows, tallies)
    seen.append(("corpus", languages_of(corpus_rows)))
    for set_name, rows in test_sets:
        rows = rows[:max_rows]
        tally_parallel(counter, rows, tallies)
        seen.append((set_name, languages_of(rows)))
    conversations = itertools.islice((c for c in iter_jsonl(train) if not c["meta"].get("repeat")), max_rows)  # a mix repeat is no new chat
    conversations = list(conversations)
    lengths = renderer_tokenize([c["messages"] for c in conversations])
    tally_truncation([((c["meta"]["src_lang"], c["meta"]["tgt_lang"]), n) for c, n in zip(conversations, lengths)], max_seq_len, tallies)
    return summarize(tallies, language_sources(seen), tokenizer=name, max_seq_len=max_seq_len, max_premium=max_premium)


def run_audit(params: Any, model_dir: Path, root: Path, test_set_specs: Sequence[Any], out_folder: Path) -> TokenizerAudit:
    """The audit of the stage's tokenizer (with tokenize.template installed) over data/raw, data/synth and the
    file-based test sets; written to `out_folder`."""
    from transformers import AutoTokenizer

    from bayling.tokenize.chat import Renderer, tokenize_batch
    from bayling.tokenize.templates import compile_template, prepare_tokenizer

    prepared = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), params.template)
    tokenizer = prepared.tokenizer
    renderer = Renderer(tokenizer, prepared.end_of_turn, compile_template(tokenizer, prepared.end_of_turn))

    def lengths(conversations: list[list[dict[str, str]]]) -> list[int]:
        out: list[int] = []
        for start in range(0, len(conversations), 1000):
            out.extend(len(item) for item in tokenize_batch(tokenizer, renderer, conversations[start : start + 1000]))
        return out

    audit = audit_tokenizer(tokenizer, lengths, corpus=root / "data/raw/corpus.jsonl", train=root / "data/synth/train.jsonl",
                            test_sets=evaluation_rows(test_set_specs, root), max_seq_len=params.max_seq_len,
                            max_premium=params.audit.max_premium, name=model_dir.name, max_rows=params.audit.max_rows)
    write_audit(audit, out_folder)
    return audit
