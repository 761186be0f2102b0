"""Progress a person can watch while long work runs: train steps, generation batches, synthesis shards,
tokenize chunks. The same calls show a tqdm bar in a terminal and a live progress artifact in Prefect.

Stages report through one small API: `track(iterable, total, task, unit)` or `progress(total, task, unit)`
for a loop, and `trainer_callback()` for the Trainer's optimizer steps. Where it goes depends on
BAYLING_PROGRESS:

- unset or `tqdm` (a stage run directly, `python -m stages.train`): a tqdm bar on stderr. tqdm's own
  TQDM_DISABLE=1 silences it, as it silences every other bar.
- `events` (set by the flows for the stages they run): no bar; throttled lines on stdout, a fixed
  prefix and a JSON object (`@@bayling-progress {"task": "train", "done": 12, "total": 40, ...}`).
- `off`: nothing.

On the flow's side `flows.runtime.stage_watch` reads those lines out of the stage's output and turns them
into log lines and a Prefect progress artifact per stage.

Why this is written here rather than taken from a library: tqdm draws bars on a stream and has no sink
for Prefect, and Prefect cannot see into the stage at all: the flow runs `dvc repro`, which runs the stage
as a process of its own, with no Prefect run context to attach an artifact to. The one channel from the
stage back to the flow is the stage's output, which the flow already reads line by line; so the stage
writes its progress there, in a form the flow can tell from ordinary log lines.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

MODE_ENV = "BAYLING_PROGRESS"
EVENT_PREFIX = "@@bayling-progress "
PERCENT_STEP = 10  # a log line (and an event, whatever the interval) each time a loop passes a multiple of this
EMIT_INTERVAL_S = 2.0  # the stage prints an event at most this often between those steps

T = TypeVar("T")
_SEQUENCE = itertools.count(1)


def mode() -> str:
    """`tqdm`, `events` or `off`, from BAYLING_PROGRESS (anything else is tqdm)."""
    value = os.environ.get(MODE_ENV, "tqdm").strip().lower()
    return value if value in ("events", "off") else "tqdm"


def percent_of(done: int, total: int) -> float:
    return 100.0 if total <= 0 else max(0.0, min(100.0, 100.0 * done / total))


class Progress:
    """One loop's progress: `update(n)` as work completes, `close()` when it is all done.

    In events mode it prints an event when the loop starts, each time it passes a multiple of
    PERCENT_STEP percent, at most every EMIT_INTERVAL_S seconds in between, and at the end (always 100%).
    """

    def __init__(self, total: int, task: str, unit: str = "it", *, initial: int = 0, stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.task, self.unit, self.done = int(total), task, unit, int(initial)
        self.mode = mode()
        self.closed = False
        self._stream, self._clock = stream, clock
        self._id = f"{os.getpid()}-{next(_SEQUENCE)}"
        self._bar: Any = None
        self._last_emit = -math.inf
        self._last_step = -1
        if self.mode == "tqdm":
            from tqdm import tqdm

            # TQDM_DISABLE is read here, when the bar starts: tqdm itself reads it only once, on import
            disabled = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
            self._bar = tqdm(total=self.total, desc=task, unit=unit, initial=self.done, dynamic_ncols=True, file=stream,
                             disable=disabled)
        elif self.mode == "events":
            self._emit()

    def update(self, n: int = 1) -> None:
        self.update_to(self.done + n)

    def update_to(self, done: int) -> None:
        if self.closed or done == self.done:
            return
        if self._bar is not None:
            self._bar.update(done - self.done)
        self.done = done
        if self.mode == "events":
            step = int(percent_of(self.done, self.total) // PERCENT_STEP)
            if step > self._last_step or self._clock() - self._last_emit >= EMIT_INTERVAL_S:
                self._emit()

    def close(self) -> None:
        """The loop is finished: the bar closes, and the end event says 100%."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "events":
            self._emit(end=True)

    def _emit(self, end: bool = False) -> None:
        event = {"id": self._id, "task": self.task, "done": self.done, "total": self.total, "unit": self.unit}
        if end:
            event["end"] = True
        stream = self._stream or sys.stdout
        stream.write(EVENT_PREFIX + json.dumps(event, separators=(",", ":")) + "\n")
        stream.flush()
        self._last_emit = self._clock()
        self._last_step = int(percent_of(self.done, self.total) // PERCENT_STEP)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.close()
        elif self._bar is not None:
            self._bar.close()  # a failed loop leaves its bar where it stopped, and sends no end event


def progress(total: int, task: str, unit: str = "it", *, initial: int = 0) -> Progress:
    """A context manager for a loop of `total` units: `with progress(n, "generate", "batch") as bar: bar.update()`."""
    return Progress(total, task, unit, initial=initial)


def track(iterable: Iterable[T], total: int, task: str, unit: str = "it") -> Iterator[T]:
    """Yield from `iterable`, counting one unit per item; the end event goes out once it is exhausted."""
    with Progress(total, task, unit) as bar:
        for item in iterable:
            yield item
            bar.update()


def trainer_callback() -> Any:
    """A transformers TrainerCallback showing optimizer steps, on the main process only (the others stay silent)."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Progress | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:  # global_step is already the resumed checkpoint's here
                self.bar = Progress(state.max_steps, "train", "step", initial=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update_to(state.global_step)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return StepProgress()
