"""Screening the corpus before synthesis: quality filters (script, language ID, length ratio, duplicates)
and decontamination against evaluation sets, row by row, every rejection quarantined with its reason."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from bayling.config.synthesize import FilterParams
from bayling.core.quarantine import Problem, Quarantined
from bayling.core.records import CorpusRow
from bayling.synthesize import quality
from bayling.synthesize.decontam import Decontaminator


@dataclass
class ScreenStats:
    rows_in: int = 0
    rows_kept: int = 0
    rows_quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    segments_removed: Counter = field(default_factory=Counter)
    decontaminated: Counter = field(default_factory=Counter)
    language_id: dict[str, Any] = field(default_factory=dict)  # which languages the language ID filter checked

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "row_reasons": dict(sorted(self.reasons.items())),
            "segments_removed": dict(sorted(self.segments_removed.items())),
            "decontaminated_rows_per_eval_set": dict(sorted(self.decontaminated.items())),
            "language_id": self.language_id,
        }


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def screen_row(
    row: CorpusRow,
    filters: FilterParams,
    decontaminator: Decontaminator | None,
    seen: set[bytes],
    langid_segments: Counter | None = None,
) -> tuple[CorpusRow | None, list[Problem], str | None]:
    """Apply the quality filters and decontamination to one corpus row.

    Returns the (possibly reduced) row or None, the per-segment problems, and the row's rejection reason.
    A row touching an evaluation set is rejected first. Then a segment in the wrong script,
    misidentified, or far off the row's median length is removed; a row left with fewer than two
    segments, or a duplicate, is rejected. `langid_segments` counts, per language, the segments language
    ID looked at.
    """
    problems: list[Problem] = []
    if decontaminator is not None:
        # First, on every segment as given: a contaminated row is reported as such, whatever else is wrong with it.
        for text in row.texts.values():
            hit = decontaminator.match(text)
            if hit:
                return None, problems, f"overlaps evaluation set {hit[0]} ({hit[1]})"
    texts = dict(row.texts)
    for code, text in list(texts.items()):
        if filters.min_script_share > 0:
            check = quality.check_script(text, code, filters.min_script_share)
            if not check.ok:
                problems.append(Problem(f"texts.{code}", f"wrong script: {check.share:.0%} {check.expected}, mostly {check.dominant}"))
                del texts[code]
                continue
        if filters.langid:
            lid = quality.check_langid(
                text, code, filters.langid_min_probability, backend=filters.langid_backend, model_path=filters.langid_model_path
            )
            if langid_segments is not None:
                langid_segments[code] += 1
            if not lid.ok:
                problems.append(Problem(f"texts.{code}", f"language ID says {lid.predicted} ({lid.probability:.2f})"))
                del texts[code]
    if len(texts) == 2:
        (a, ta), (b, tb) = texts.items()
        ratio = quality.length_ratio(ta, tb)
        if ratio > filters.max_length_ratio:
            problems.append(Problem("texts", f"length ratio {ratio:.1f} between {a} and {b} exceeds {filters.max_length_ratio}"))
            texts.clear()
    elif len(texts) > 2:
        sizes = {code: len(text.encode("utf-8")) for code, text in texts.items()}
        median = _median(list(sizes.values()))
        for code, size in sizes.items():
            ratio = max(size, median) / max(1, min(size, median))
            if ratio > filters.max_length_ratio:
                problems.append(
                    Problem(f"texts.{code}", f"length ratio {ratio:.1f} to the row's median exceeds {filters.max_length_ratio}")
                )
                del texts[code]
    if len(texts) < 2:
        return None, problems, "fewer than two usable segments"
    if filters.dedupe != "off":
        keyed = {c: (quality.normalized_key(t) if filters.dedupe == "normalized" else t) for c, t in texts.items()}
        key = quality.digest(json.dumps(keyed, sort_keys=True, ensure_ascii=False))
        if key in seen:
            return None, problems, f"duplicate ({filters.dedupe})"
        seen.add(key)
    return replace(row, texts=texts), problems, None


def screen_corpus(
    rows: Iterator[CorpusRow],
    filters: FilterParams,
    decontaminator: Decontaminator | None,
    langid_segments: Counter | None = None,
) -> Iterator[tuple[CorpusRow | None, Quarantined | None, list[Quarantined]]]:
    """Stream (kept row or None, row quarantine record or None, segment quarantine records)."""
    seen: set[bytes] = set()
    for lineno, row in enumerate(rows, start=1):
        kept, problems, reason = screen_row(row, filters, decontaminator, seen, langid_segments)
        segment_records = [
            Quarantined(row.source, f"corpus:{row.id}", lineno, (p,), _segment_preview(row, p.field)) for p in problems
        ]
        row_record = None
        if kept is None:
            row_record = Quarantined(
                row.source,
                f"corpus:{row.id}",
                lineno,
                (Problem(None, reason or "rejected"),),
                json.dumps(row.texts, ensure_ascii=False)[:600],
            )
        yield kept, row_record, segment_records


def _segment_preview(row: CorpusRow, field: str | None) -> str:
    if field and field.startswith("texts."):
        return row.texts.get(field.split(".", 1)[1], "")[:300]
    return json.dumps(row.texts, ensure_ascii=False)[:600]


def screen_file(
    corpus: Path, kept_path: Path, quarantine: IO[str], filters: FilterParams, decontaminator: Decontaminator | None
) -> ScreenStats:
    """Screen the corpus file into `kept_path`, writing every rejection to `quarantine`; return the counts."""
    stats = ScreenStats()
    langid_segments: Counter = Counter()
    langid_removed: Counter = Counter()
    with open(corpus, encoding="utf-8") as rows, open(kept_path, "w", encoding="utf-8") as kept_rows:
        corpus_rows = (CorpusRow.from_json(json.loads(line)) for line in rows)
        for kept, row_record, segment_records in screen_corpus(corpus_rows, filters, decontaminator, langid_segments):
            stats.rows_in += 1
            for record in segment_records:
                label = reason_label(record.problems[0].reason)
                stats.segments_removed[label] += 1
                if label == "language ID":
                    langid_removed[(record.problems[0].field or "").removeprefix("texts.")] += 1
                quarantine.write(json.dumps({"kind": "segment", **record.to_json()}, ensure_ascii=False) + "\n")
            if kept is not None:
                stats.rows_kept += 1
                kept_rows.write(json.dumps(kept.to_json(), ensure_ascii=False) + "\n")
                continue
            reason = row_record.problems[0].reason
            stats.rows_quarantined += 1
            stats.reasons[reason_label(reason)] += 1
            if reason.startswith("overlaps evaluation set"):
                stats.decontaminated[reason.split()[3]] += 1
            quarantine.write(json.dumps({"kind": "row", **row_record.to_json()}, ensure_ascii=False) + "\n")
    stats.language_id = langid_report(filters, langid_segments, langid_removed)
    return stats


def langid_report(filters: FilterParams, segments: Counter, removed: Counter) -> dict[str, Any]:
    """Per language: whether language ID checked its segments (with which backend and labels) or let them
    pass unchecked, and why. `segments` counts the segments it looked at, `removed` those it removed."""
    if not filters.langid:
        return {"enabled": False}
    backend, model = filters.langid_backend, filters.langid_model_path
    languages: dict[str, Any] = {}
    for code in sorted(segments):
        support = quality.langid_support(code, backend, model)
        entry: dict[str, Any] = {"checked": support.checked, "labels": list(support.labels), "segments": segments[code]}
        if support.checked:
            entry["removed"] = removed[code]
        else:
            entry["unchecked_because"] = support.reason
        languages[code] = entry
    return {
        "enabled": True,
        "backend": backend,
        "model": model,
        "min_probability": filters.langid_min_probability,
        "checked": [code for code, entry in languages.items() if entry["checked"]],
        "unchecked": [code for code, entry in languages.items() if not entry["checked"]],
        "languages": languages,
    }


def reason_label(reason: str) -> str:
    for prefix in ("overlaps evaluation set", "duplicate", "fewer than two", "wrong script", "length ratio", "language ID"):
        if reason.startswith(prefix):
            return prefix
    return reason
