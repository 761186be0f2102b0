"""Checks that the evaluation's records belong where they are about to be written, run before evaluate writes
anything.

Every score is only as good as the pairing of each output with its own item. A lookup by an id that two
items shared once sent one direction's outputs to every direction and scored them against the others'
references; nothing failed, the numbers were simply wrong. What these checks can see is the records:

- each model's predictions cover exactly the configured test sets and directions;
- in each direction, prediction k is the record of item k of that direction: the same id, direction, source
  and references, in order (a record reused in another direction or position, as then, stops the stage);
- every item is of its own direction (its languages spell the direction), and a file-based item's prompt
  carries its own source segment (and a constrained item's, each of its terms);
- the champion's outputs, where present, number one per item;
- the review's segments are items of the direction they are listed under, with that item's source and
  reference.

A break stops the stage, naming the test set and direction. What they cannot see is whether a text was
generated for the prompt it is paired with: a generated string carries no mark of its prompt. That is what
the oracle tests prove (tests/evaluate/test_oracles.py: stand-in models that answer with the reference,
the source, or a tag naming the direction). At run time, `identical_directions` adds a note when two
directions of one model received the very same outputs, the text-level trace of that old bug (or of a model
that copies its source, which is why it is a note and not a stop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bayling.core.errors import PipelineError
from bayling.evaluate.test_sets import TestItem


class _Prediction(Protocol):
    item: TestItem
    hypothesis: str


TestSets = Mapping[str, Mapping[str, Sequence[TestItem]]]
Predictions = Mapping[str, Mapping[str, Sequence[_Prediction]]]  # test set -> direction -> predictions


class BrokenInvariant(PipelineError):
    """An output paired with the wrong item: the stage stops before writing anything."""


def _fail(test_set: str, direction: str, what: str) -> BrokenInvariant:
    return BrokenInvariant(f"test set {test_set}, direction {direction}: {what}; nothing was written (this is a bug in the "
                           "pipeline, not in your data: please report it)")


def check_items(test_sets: TestSets) -> None:
    """Every item is of the direction it is listed under, and a file-based item's prompt holds its source (and a
    constrained item's, its terms)."""
    for name, by_direction in test_sets.items():
        for direction, items in by_direction.items():
            for position, item in enumerate(items, start=1):
                if item.direction != direction or f"{item.src_lang}-{item.tgt_lang}" != direction:
                    raise _fail(name, direction, f"item {position} ({item.id}) is of direction {item.direction} "
                                                 f"({item.src_lang}-{item.tgt_lang})")
                prompt = item.prompt[-1]["content"] if item.prompt else ""
                if item.source not in prompt:
                    raise _fail(name, direction, f"item {position} ({item.id}): its prompt does not contain its source segment")
                if any(term not in prompt for term in item.terms):
                    raise _fail(name, direction, f"item {position} ({item.id}): its prompt does not name all of its terms")


def check_predictions(label: str, test_sets: TestSets, predictions: Predictions) -> None:
    """Model `label`'s predictions pair each output with its own item, direction by direction, in order."""
    if set(predictions) != set(test_sets):
        raise PipelineError(f"{label}: predictions for test sets {sorted(predictions)}, but the test sets are {sorted(test_sets)}")
    for name, by_direction in test_sets.items():
        if set(predictions[name]) != set(by_direction):
            raise PipelineError(f"test set {name}: {label} has predictions for {sorted(predictions[name])}, "
                                f"not for its directions {sorted(by_direction)}")
        for direction, items in by_direction.items():
            ours = predictions[name][direction]
            if len(ours) != len(items):
                raise _fail(name, direction, f"{label} has {len(ours)} predictions for {len(items)} items")
            for position, (prediction, item) in enumerate(zip(ours, items), start=1):
                theirs = prediction.item
                if (theirs.id, theirs.direction, theirs.source, theirs.references) != (item.id, item.direction, item.source,
                                                                                       item.references):
                    raise _fail(name, direction, f"{label}'s prediction {position} is for item {theirs.id} ({theirs.direction}), "
                                                 f"not for {item.id}")
                if not isinstance(prediction.hypothesis, str):
                    raise _fail(name, direction, f"{label}'s prediction {position} is not text")


def check_outputs(test_sets: TestSets, hypotheses: Mapping[str, Mapping[str, Sequence[str]]] | None, label: str) -> None:
    """Another system's outputs (the champion's): one per item of each direction they cover."""
    for name, by_direction in (hypotheses or {}).items():
        for direction, outputs in by_direction.items():
            items = test_sets.get(name, {}).get(direction)
            if items is None:
                raise PipelineError(f"{label} outputs for test set {name}, direction {direction}, which is not evaluated")
            if len(outputs) != len(items):
                raise _fail(name, direction, f"{len(outputs)} {label} outputs for {len(items)} items")


def check_review(test_sets: TestSets, review: Mapping[str, Any]) -> None:
    """Each reviewed direction lists only its own items, with their own source and reference."""
    for entry in review.get("directions", []):
        name, direction = entry["test_set"], entry["direction"]
        items = test_sets.get(name, {}).get(direction)
        if items is None:
            raise PipelineError(f"the review lists test set {name}, direction {direction}, which is not evaluated")
        if entry["segments"] != len(items):
            raise _fail(name, direction, f"the review counts {entry['segments']} segments for {len(items)} items")
        by_id = {item.id: item for item in items}  # ids are unique within a test set (test_sets.check_unique_ids)
        for change in ("regressed", "improved"):
            for segment in entry[change]:
                item = by_id.get(segment["id"])
                if item is None or (segment["source"], segment["reference"]) != (item.source, item.reference):
                    raise _fail(name, direction, f"the review's {change} segment {segment['id']} is not an item of this direction")


def identical_directions(label: str, hypotheses: Mapping[str, Mapping[str, Sequence[str]]]) -> list[str]:
    """Notes for pairs of directions of one test set whose outputs are the same list, item for item, and not all one
    string (a model that says nothing, or the same thing, everywhere is not news)."""
    notes = []
    for name, by_direction in hypotheses.items():
        seen: dict[tuple[str, ...], str] = {}
        for direction, outputs in by_direction.items():
            key = tuple(outputs)
            if len(set(key)) < 2:
                continue
            if key in seen:
                notes.append(f"{label}: {name} {seen[key]} and {direction} received the same {len(key)} outputs: a model that "
                             "copies its source does this; otherwise outputs are paired with the wrong items")
            else:
                seen[key] = direction
    return notes


def check_evaluation(test_sets: TestSets, predictions: Mapping[str, Predictions],
                     champion: Mapping[str, Mapping[str, Sequence[str]]] | None, review: Mapping[str, Any]) -> None:
    """All of the above, for every model's predictions (label -> predictions)."""
    check_items(test_sets)
    for label, by_test_set in predictions.items():
        check_predictions(label, test_sets, by_test_set)
    check_outputs(test_sets, champion, "champion")
    check_review(test_sets, review)
