"""A rebuild compared with the version's record, stage by stage in pipeline order, and the first difference
explained file by file: rows gained and lost for data, the change in each weight tensor's norm for a model.

Hand-written because DVC compares a work tree only with its own dvc.lock (`dvc status`, `dvc diff`), not
with a record kept in a model registry, and reports a changed directory as a changed hash, not as rows
or weights.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.reproduce.record import ModelRef, RecordedVersion, lock_outs, normal_path

TOP_TENSORS = 5
MAX_FILES_SHOWN = 12


@dataclass(frozen=True)
class OutResult:
    path: str
    recorded: str | None
    reproduced: str | None
    cached: bool  # a cached DVC out (data, weights, predictions), not a report written in place or persistent state

    @property
    def same(self) -> bool:
        return self.recorded == self.reproduced


@dataclass
class StageResult:
    stage: str
    outs: list[OutResult] = field(default_factory=list)

    @property
    def differing(self) -> list[OutResult]:
        """Cached outs that differ, or that only one side has: the bit-for-bit contract. Reports written in
        place are not in it."""
        return [o for o in self.outs if o.cached and not o.same]


@dataclass
class Verdict:
    stages: list[StageResult]
    reran: list[str]

    @property
    def first_difference(self) -> StageResult | None:
        return next((s for s in self.stages if s.stage in self.reran and s.differing), None)

    @property
    def reproduced(self) -> bool:
        """Nothing differs, and something was compared: an empty comparison proves nothing."""
        return self.first_difference is None and bool(self.checked())

    def checked(self) -> list[OutResult]:
        return [o for s in self.stages if s.stage in self.reran for o in s.outs if o.cached and o.recorded is not None]


def pipeline_order(dvc_yaml: dict[str, Any]) -> list[str]:
    return list(dvc_yaml.get("stages") or {})


def stage_results(order: list[str], stage_outs: dict[str, list[tuple[str, bool]]], recorded: dict[str, str],
                  reproduced: dict[str, str]) -> list[StageResult]:
    """Recorded against reproduced md5s, stage by stage in pipeline order. `stage_outs` maps a stage to its
    (out path, cached) pairs as DVC resolved them in the work tree."""
    results = []
    for stage in order:
        outs = [OutResult(path, recorded.get(path), reproduced.get(path), cached) for path, cached in stage_outs.get(stage, [])]
        results.append(StageResult(stage, outs))
    return results


def dvc_stage_outs(workdir: Path) -> tuple[dict[str, list[tuple[str, bool]]], dict[str, str]]:
    """Each stage's outs in the work tree (path as in dvc.lock, compared bit for bit or not) and their md5 in its
    dvc.lock."""
    import yaml
    from dvc.repo import Repo

    outs: dict[str, list[tuple[str, bool]]] = {}
    with Repo(str(workdir)) as repo:
        for stage in repo.index.stages:
            name = getattr(stage, "name", None)
            if name:
                # a persistent out is resumable state (train's kept checkpoints log wall-clock throughput in
                # trainer_state.json): like a report written in place, it is counted, not held to bit equality
                outs[name] = [(normal_path(out.def_path), bool(out.use_cache) and not out.persist) for out in stage.outs]
    lock_path = workdir / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text("utf-8")) if lock_path.exists() else {}
    return outs, lock_outs(lock or {})


# --- explaining a difference -------------------------------------------------------------------------------

def cache_file(cache: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object: files/md5/<first two hex digits>/<the rest>."""
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def directory_listing(cache: Path, md5: str) -> dict[str, str] | None:
    path = cache_file(cache, md5)
    if not path.exists():
        return None
    return {entry["relpath"]: entry["md5"] for entry in json.loads(path.read_text("utf-8"))}


def jsonl_rows(path: Path) -> Counter[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return Counter(line.rstrip("\n") for line in handle if line.strip())


def arrow_rows(path: Path) -> int:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all().num_rows
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).read_all().num_rows


def weight_deltas(old: Path, new: Path, top: int = TOP_TENSORS) -> list[str]:
    """Per-tensor change ||new - old|| / ||old||, largest first, and the change over all tensors."""
    import torch
    from safetensors import safe_open

    lines: list[str] = []
    changes: list[tuple[float, str, float]] = []
    total_delta = total_norm = 0.0
    with safe_open(str(old), "pt") as before, safe_open(str(new), "pt") as after:
        old_names, new_names = set(before.keys()), set(after.keys())
        if old_names != new_names:
            lines.append(f"tensors only in the recorded file: {sorted(old_names - new_names)[:5]}; "
                         f"only in the new one: {sorted(new_names - old_names)[:5]}")
        for name in sorted(old_names & new_names):
            a, b = before.get_tensor(name).double(), after.get_tensor(name).double()
            if a.shape != b.shape:
                lines.append(f"{name}: shape {tuple(a.shape)} -> {tuple(b.shape)}")
                continue
            delta, norm = torch.linalg.vector_norm(b - a).item(), torch.linalg.vector_norm(a).item()
            total_delta += delta**2
            total_norm += norm**2
            if delta:
                changes.append((delta / norm if norm else float("inf"), name, delta))
    changes.sort(reverse=True)
    lines.insert(0, f"{len(changes)} of {len(old_names & new_names)} tensors changed; "
                    f"||Δ|| / ||W|| over all weights = {(total_delta ** 0.5) / (total_norm ** 0.5 or 1):.3e}")
    lines += [f"  {name}: ||Δ|| = {delta:.4e} ({relative:.3e} of its norm)" for relative, name, delta in changes[:top]]
    return lines


def json_changes(old: Path, new: Path, limit: int = 8) -> list[str]:
    from bayling.config.loader import flatten

    a, b = json.loads(old.read_text("utf-8")), json.loads(new.read_text("utf-8"))
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return ["content differs"]
    fa, fb = flatten(a), flatten(b)
    keys = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
    shown = [f"  {k}: {fa.get(k, '(absent)')!s:.60} -> {fb.get(k, '(absent)')!s:.60}" for k in keys[:limit]]
    return [f"{len(keys)} field(s) differ", *shown]


def describe_file(relpath: str, old: Path | None, new: Path | None) -> list[str]:
    """What changed in one file, in the terms its kind is read in."""
    if old is None or not old.exists():
        return [f"{relpath}: new file" if old is None else f"{relpath}: the recorded copy is not in the cache (not pushed?)"]
    if new is None or not new.exists():
        return [f"{relpath}: no longer produced"]
    suffix = Path(relpath).suffix
    try:
        if suffix == ".jsonl":
            before, after = jsonl_rows(old), jsonl_rows(new)
            gone, added = before - after, after - before
            return [f"{relpath}: rows {sum(before.values())} -> {sum(after.values())} "
                    f"({sum(gone.values())} recorded rows gone, {sum(added.values())} new)"]
        if suffix == ".arrow":
            return [f"{relpath}: rows {arrow_rows(old)} -> {arrow_rows(new)}"]
        if suffix == ".safetensors":
            return [f"{relpath}:", *("  " + line for line in weight_deltas(old, new))]
        if suffix == ".json":
            return [f"{relpath}: " + (lines := json_changes(old, new))[0], *lines[1:]]
    except Exception as exc:  # an unreadable file still gets a line
        return [f"{relpath}: differs ({type(exc).__name__} reading it: {exc})"]
    return [f"{relpath}: {old.stat().st_size} -> {new.stat().st_size} bytes"]


def explain(out: OutResult, cache: Path) -> list[str]:
    """The files of `out` that differ between the record and the rebuild, each described."""
    if out.recorded is None:
        return [f"{out.path}: not in the version's record (the version's dvc.*.md5 tags have no such out)"]
    if out.reproduced is None:
        return [f"{out.path}: the rebuild's dvc.lock has no md5 for it"]
    if not out.recorded.endswith(".dir"):
        return describe_file(out.path, cache_file(cache, out.recorded), cache_file(cache, out.reproduced))
    before, after = directory_listing(cache, out.recorded), directory_listing(cache, out.reproduced)
    if before is None or after is None:
        return [f"{out.path}: the {'recorded' if before is None else 'new'} file list is not in the cache, so the files "
                "cannot be compared one by one (was the recorded version pushed to the DVC remote?)"]
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    lines = [f"{out.path}: {len(changed)} of {len(set(before) | set(after))} files differ"]
    for relpath in changed[:MAX_FILES_SHOWN]:
        old = cache_file(cache, before[relpath]) if relpath in before else None
        new = cache_file(cache, after[relpath]) if relpath in after else None
        lines += ["  " + line for line in describe_file(relpath, old, new)]
    if len(changed) > MAX_FILES_SHOWN:
        lines.append(f"  ... and {len(changed) - MAX_FILES_SHOWN} more")
    return lines


def render(ref: ModelRef, recorded: RecordedVersion, verdict: Verdict, cache: Path, workdir: Path | None) -> str:
    """The report; `workdir` is None when the work tree was removed after a bit-for-bit rebuild."""
    where = f"rebuilt in {workdir}" if workdir else "rebuilt in a work tree since removed"
    head = f"{ref} = {recorded.name} version {recorded.version}, commit {recorded.commit[:12]}, {where}"
    checked = verdict.checked()
    if not checked and verdict.first_difference is None:
        return "\n".join([head, "NOT reproduced: no cached output of the re-run stages is in the version's record, so "
                                "nothing was compared"])
    reports = [o for s in verdict.stages if s.stage in verdict.reran for o in s.outs if not o.cached and o.recorded is not None]
    report_line = ("reports written in place and kept checkpoints (not compared bit for bit: they hold run ids and "
                   f"timings): {sum(o.same for o in reports)} of {len(reports)} identical") if reports else ""
    first = verdict.first_difference
    if first is None:
        lines = [head, f"reproduced bit for bit: {len(checked)} cached outputs of {', '.join(verdict.reran)} match the record"]
        return "\n".join([*lines, report_line] if report_line else lines)
    lines = [head, f"NOT reproduced: the first stage whose output differs is '{first.stage}'"]
    for out in first.differing:
        try:
            described = explain(out, cache)
        # the verdict stands whatever the cache holds: a damaged or foreign object only loses the description
        except (OSError, ValueError, KeyError, TypeError) as exc:
            described = [f"{out.path}: its cached objects could not be read ({type(exc).__name__}: {exc})"]
        lines += [f"  {out.path}: recorded {out.recorded}, rebuilt {out.reproduced}", *("    " + line for line in described)]
    later = [s.stage for s in verdict.stages if s.stage in verdict.reran and s.differing and s is not first]
    if later:
        lines.append(f"later stages also differ: {', '.join(later)}")
    same_before = [s.stage for s in verdict.stages[: verdict.stages.index(first)] if s.stage in verdict.reran]
    if same_before:
        lines.append(f"identical before it: {', '.join(same_before)}")
    return "\n".join([*lines, report_line] if report_line else lines)
