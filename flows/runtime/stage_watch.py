"""The flow's side of the stages' progress (bayling.core.progress is the stage's): `StageWatch` reads the
`@@bayling-progress` event lines out of a stage's output, keeps them out of the run log, logs one line every
PERCENT_STEP percent, and keeps one Prefect progress artifact per stage (`progress-<stage>`) up to date, at
most every PUBLISH_INTERVAL_S seconds, ending at 100 when the stage succeeds."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayling.core.progress import EVENT_PREFIX, PERCENT_STEP, percent_of

PUBLISH_INTERVAL_S = 3.0  # the flow updates a stage's artifact at most this often


@dataclass(frozen=True)
class ProgressEvent:
    id: str
    task: str
    done: int
    total: int
    unit: str
    end: bool = False

    @property
    def percent(self) -> float:
        return 100.0 if self.end else percent_of(self.done, self.total)

    def describe(self) -> str:
        return f"{self.task} {self.percent:.0f}% ({self.done}/{self.total} {self.unit})"


def parse_event(line: str) -> ProgressEvent | None:
    """The event in an output line, or None when the line is not one (or is a damaged one).

    The prefix may follow whatever a launcher puts before a child's lines (torchrun's rank tags)."""
    at = line.find(EVENT_PREFIX)
    if at < 0:
        return None
    try:
        data = json.loads(line[at + len(EVENT_PREFIX):])
        return ProgressEvent(str(data["id"]), str(data["task"]), int(data["done"]), int(data["total"]), str(data.get("unit", "it")),
                             bool(data.get("end", False)))
    except (ValueError, KeyError, TypeError):
        return None


def is_event_line(line: str) -> bool:
    return EVENT_PREFIX in line


class PrefectProgressArtifact:
    """The progress artifact of one stage in the current flow run, `progress-<stage>`: created on first use,
    updated after; the same one again if the stage's task is retried in this process."""

    _created: dict[tuple[str, str], Any] = {}

    def __init__(self, stage: str) -> None:
        self.key = artifact_key(stage)

    def __call__(self, percent: float, description: str) -> None:
        from prefect import runtime
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        slot = (str(runtime.flow_run.id), self.key)
        if slot in self._created:
            update_progress_artifact(self._created[slot], percent, description=description)
        else:
            self._created[slot] = create_progress_artifact(percent, key=self.key, description=description)


def artifact_key(stage: str) -> str:
    """`progress-<stage>` in what Prefect allows in a key: lowercase letters, digits and dashes."""
    cleaned = "".join(c if c.isascii() and c.isalnum() else "-" for c in stage.lower()).strip("-")
    return f"progress-{cleaned or 'stage'}"


class StageWatch:
    """What the flow does with one stage's output: takes the progress events out, logs a line each time a
    loop passes a multiple of PERCENT_STEP percent, and publishes the latest state at most every
    PUBLISH_INTERVAL_S seconds (the rest wait for the next line or for `finish`).

    A publishing failure (the Prefect API away for a moment) is logged once and then ignored: progress is
    there to be watched, and never stops a stage.
    """

    def __init__(self, stage: str | None, log_line: Callable[[str], Any], publish: Callable[[float, str], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stage, self._log, self._publish, self._clock = stage or "stage", log_line, publish, clock
        self.current: ProgressEvent | None = None
        self._logged_step = 0
        self._last_publish = -math.inf
        self._pending: tuple[float, str] | None = None
        self._publish_now(0.0, f"{self.stage}: started")

    def feed(self, line: str) -> bool:
        """Take one output line; True when it was a progress event (not to be logged as it stands)."""
        if not is_event_line(line):
            self._flush_if_due()
            return False
        event = parse_event(line)
        if event is None:
            return True
        if self.current is None or event.id != self.current.id:
            self._logged_step = 0
        self.current = event
        step = int(event.percent // PERCENT_STEP)
        if step > self._logged_step:
            self._logged_step = step
            self._log(self._label(event))
        self._pending = (event.percent, self._label(event))
        self._flush_if_due()
        return True

    def finish(self, succeeded: bool) -> None:
        """The stage ended: 100% when it succeeded, otherwise where it stopped."""
        if succeeded:
            self._publish_now(100.0, f"{self.stage}: done")
        elif self._pending or self.current:
            percent, description = self._pending or (self.current.percent, self._label(self.current))  # type: ignore[union-attr]
            self._publish_now(percent, f"{description} (failed)")

    def _label(self, event: ProgressEvent) -> str:
        """`train: 30% (12/40 step)` when the loop is the stage's own, `evaluate: generate 30% (3/10 batch)` otherwise."""
        described = event.describe()
        return f"{self.stage}: {described.removeprefix(event.task + ' ') if event.task == self.stage else described}"

    def _flush_if_due(self) -> None:
        if self._pending and self._clock() - self._last_publish >= PUBLISH_INTERVAL_S:
            self._publish_now(*self._pending)

    def _publish_now(self, percent: float, description: str) -> None:
        self._pending = None
        self._last_publish = self._clock()
        if self._publish is None:
            return
        try:
            self._publish(round(percent, 1), description)
        except Exception as exc:  # see the class docstring
            self._log(f"{self.stage}: progress artifact not updated ({type(exc).__name__}: {exc}); progress stays in this log")
            self._publish = None

