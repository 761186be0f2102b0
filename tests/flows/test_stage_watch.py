"""The flow's side of progress: the stages' event lines turned into log lines every 10% and artifact updates at
most every few seconds (tests/core/test_progress.py has the stage's side, which writes them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ManualClock

from bayling.core import progress
from bayling.core.progress import EVENT_PREFIX
from flows.runtime import stage_watch
from flows.runtime.stage_watch import StageWatch, artifact_key, parse_event

ROOT = Path(__file__).resolve().parents[2]


def test_parse_event_finds_the_prefix_after_a_launcher_tag_and_refuses_damaged_lines():
    line = '[rank0]: ' + EVENT_PREFIX + '{"id":"1-2","task":"train","done":3,"total":12,"unit":"step"}'
    event = parse_event(line)
    assert event is not None and (event.task, event.done, event.total, event.unit, event.end) == ("train", 3, 12, "step", False)
    assert event.percent == 25.0 and event.describe() == "train 25% (3/12 step)"
    assert parse_event(EVENT_PREFIX + '{"task": "train", "done": 3') is None
    assert parse_event(EVENT_PREFIX + '{"task": "train"}') is None
    assert parse_event("INFO train: step 3 of 12") is None
    assert parse_event(EVENT_PREFIX + '{"id":"1","task":"x","done":0,"total":0,"unit":"it"}').percent == 100.0


def event_line(task_id: str, done: int, total: int, end: bool = False, task: str = "generate") -> str:
    payload = {"id": task_id, "task": task, "done": done, "total": total, "unit": "batch", **({"end": True} if end else {})}
    return EVENT_PREFIX + json.dumps(payload)


def test_the_watch_logs_every_ten_percent_and_keeps_events_out_of_the_log():
    logged: list[str] = []
    watch = StageWatch("evaluate", logged.append, clock=ManualClock())
    assert not watch.feed("loading model")
    assert all(watch.feed(event_line("1", done, 40)) for done in range(0, 41))
    assert watch.feed(event_line("1", 40, 40, end=True))
    assert logged == [f"evaluate: generate {p}% ({p * 40 // 100}/40 batch)" for p in range(10, 101, 10)]
    assert watch.feed(EVENT_PREFIX + "{damaged") and len(logged) == 10  # consumed, never logged raw


def test_each_new_loop_logs_its_own_progress():
    logged: list[str] = []
    watch = StageWatch("evaluate", logged.append, clock=ManualClock())
    for task_id in ("1", "2"):
        watch.feed(event_line(task_id, 0, 1))
        watch.feed(event_line(task_id, 1, 1, end=True))
    assert logged == ["evaluate: generate 100% (1/1 batch)"] * 2


def test_the_artifact_is_updated_at_most_every_few_seconds_and_ends_at_100():
    published: list[tuple[float, str]] = []
    clock = ManualClock()
    watch = StageWatch("train", lambda line: None, lambda percent, text: published.append((percent, text)), clock=clock)
    assert published == [(0.0, "train: started")]
    for step in range(1, 5):
        watch.feed(event_line("7", step, 40, task="train"))  # all within the interval: held back
    assert len(published) == 1
    clock.now += stage_watch.PUBLISH_INTERVAL_S
    watch.feed("an ordinary log line")  # any line lets a due update out
    assert published[-1] == (10.0, "train: 10% (4/40 batch)")  # the stage's own loop is not named twice
    watch.feed(event_line("7", 20, 40, task="train"))
    assert len(published) == 2
    watch.finish(succeeded=True)
    assert published[-1] == (100.0, "train: done")


def test_a_failed_stage_keeps_its_artifact_where_it_stopped():
    published: list[tuple[float, str]] = []
    watch = StageWatch("tokenize", lambda line: None, lambda percent, text: published.append((percent, text)), clock=ManualClock())
    watch.feed(event_line("3", 3, 10, task="tokenize train"))
    watch.finish(succeeded=False)
    assert published[-1] == (30.0, "tokenize: tokenize train 30% (3/10 batch) (failed)")


def test_a_publishing_failure_is_said_once_and_never_stops_the_stage():
    logged: list[str] = []
    calls: list[float] = []

    def unreachable(percent: float, text: str) -> None:
        calls.append(percent)
        raise ConnectionError("Prefect API away")

    clock = ManualClock()
    watch = StageWatch("synthesize", logged.append, unreachable, clock=clock)
    clock.now += stage_watch.PUBLISH_INTERVAL_S
    watch.feed(event_line("1", 1, 2, task="synthesize"))
    watch.finish(succeeded=True)
    assert calls == [0.0]
    assert logged[0] == "synthesize: progress artifact not updated (ConnectionError: Prefect API away); progress stays in this log"


def test_artifact_keys_are_what_prefect_accepts():
    assert artifact_key("train") == "progress-train"
    assert artifact_key("Eval_Set 2") == "progress-eval-set-2"


def test_a_stage_process_in_events_mode_drives_the_watch_to_100(tmp_path: Path):
    """The wire as the flow uses it: a separate process prints events, the watch reads its output."""
    script = "from bayling.core.progress import track\nfor _ in track(range(7), 7, 'tokenize train', 'chunk'):\n    print('working')\n"
    env = {"PATH": "/usr/bin:/bin", progress.MODE_ENV: "events", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    logged, published = [], []
    watch = StageWatch("tokenize", logged.append, lambda percent, text: published.append(percent))
    passed = [line for line in out.splitlines() if not watch.feed(line)]
    watch.finish(succeeded=True)
    assert passed == ["working"] * 7
    assert logged[-1] == "tokenize: tokenize train 100% (7/7 chunk)"
    assert published[-1] == 100.0
