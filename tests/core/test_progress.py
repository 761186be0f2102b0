"""Progress: tqdm in a terminal, throttled event lines under the flow, and the flow's side that turns
those lines into log lines every 10% and artifact updates at most every few seconds."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bayling.core import progress
from bayling.core.progress import EVENT_PREFIX, Progress, StageWatch, artifact_key, parse_event, track

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events(text: str) -> list[dict]:
    return [json.loads(line.split(EVENT_PREFIX, 1)[1]) for line in text.splitlines() if EVENT_PREFIX in line]


@pytest.fixture
def events_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.MODE_ENV, "events")


def test_events_are_throttled_to_each_ten_percent_when_updates_come_quickly(events_mode: None):
    stream, clock = io.StringIO(), Clock()
    with Progress(1000, "work", "row", stream=stream, clock=clock) as bar:
        for _ in range(1000):
            bar.update()
    sent = events(stream.getvalue())
    assert [e["done"] for e in sent] == [0, *range(100, 1001, 100), 1000]  # start, each 10%, end
    assert sent[-1].get("end") is True and all("end" not in e for e in sent[:-1])


def test_between_percent_steps_an_event_goes_out_once_the_interval_has_passed(events_mode: None):
    stream, clock = io.StringIO(), Clock()
    bar = Progress(1000, "work", stream=stream, clock=clock)
    bar.update()  # 0.1%: same step, no time passed
    clock.now += progress.EMIT_INTERVAL_S / 2
    bar.update()
    clock.now += progress.EMIT_INTERVAL_S / 2
    bar.update()  # the interval has passed since the start event
    assert [e["done"] for e in events(stream.getvalue())] == [0, 3]


def test_the_end_event_says_100_even_when_fewer_items_came_than_announced(events_mode: None, capsys: pytest.CaptureFixture):
    assert list(track(iter(range(3)), 5, "shards", "shard")) == [0, 1, 2]
    last = parse_event(capsys.readouterr().out.splitlines()[-1])
    assert last is not None and last.end and last.done == 3 and last.percent == 100.0


def test_a_failed_loop_sends_no_end_event(events_mode: None, capsys: pytest.CaptureFixture):
    with pytest.raises(RuntimeError), progress.progress(4, "work") as bar:
        bar.update()
        raise RuntimeError("boom")
    assert not any(e.get("end") for e in events(capsys.readouterr().out))


def test_terminal_mode_shows_a_tqdm_bar_and_no_events(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.delenv(progress.MODE_ENV, raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert sum(track(range(5), 5, "tokenize train", "chunk")) == 10
    captured = capsys.readouterr()
    assert "tokenize train: 100%|" in captured.err and "5/5" in captured.err and "chunk" in captured.err
    assert EVENT_PREFIX not in captured.out + captured.err


def test_tqdm_disable_in_the_environment_silences_the_terminal_bar(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.delenv(progress.MODE_ENV, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    list(track(range(5), 5, "work"))
    assert capsys.readouterr().err == ""


def test_events_mode_draws_no_bar(events_mode: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    list(track(range(5), 5, "work"))
    captured = capsys.readouterr()
    assert captured.err == "" and "%|" not in captured.out
    assert len(events(captured.out)) >= 2


def test_off_mode_says_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.setenv(progress.MODE_ENV, "off")
    list(track(range(5), 5, "work"))
    assert capsys.readouterr() == ("", "")


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
    watch = StageWatch("evaluate", logged.append, clock=Clock())
    assert not watch.feed("loading model")
    assert all(watch.feed(event_line("1", done, 40)) for done in range(0, 41))
    assert watch.feed(event_line("1", 40, 40, end=True))
    assert logged == [f"evaluate: generate {p}% ({p * 40 // 100}/40 batch)" for p in range(10, 101, 10)]
    assert watch.feed(EVENT_PREFIX + "{damaged") and len(logged) == 10  # consumed, never logged raw


def test_each_new_loop_logs_its_own_progress():
    logged: list[str] = []
    watch = StageWatch("evaluate", logged.append, clock=Clock())
    for task_id in ("1", "2"):
        watch.feed(event_line(task_id, 0, 1))
        watch.feed(event_line(task_id, 1, 1, end=True))
    assert logged == ["evaluate: generate 100% (1/1 batch)"] * 2


def test_the_artifact_is_updated_at_most_every_few_seconds_and_ends_at_100():
    published: list[tuple[float, str]] = []
    clock = Clock()
    watch = StageWatch("train", lambda line: None, lambda percent, text: published.append((percent, text)), clock=clock)
    assert published == [(0.0, "train: started")]
    for step in range(1, 5):
        watch.feed(event_line("7", step, 40, task="train"))  # all within the interval: held back
    assert len(published) == 1
    clock.now += progress.PUBLISH_INTERVAL_S
    watch.feed("an ordinary log line")  # any line lets a due update out
    assert published[-1] == (10.0, "train: 10% (4/40 batch)")  # the stage's own loop is not named twice
    watch.feed(event_line("7", 20, 40, task="train"))
    assert len(published) == 2
    watch.finish(succeeded=True)
    assert published[-1] == (100.0, "train: done")


def test_a_failed_stage_keeps_its_artifact_where_it_stopped():
    published: list[tuple[float, str]] = []
    watch = StageWatch("tokenize", lambda line: None, lambda percent, text: published.append((percent, text)), clock=Clock())
    watch.feed(event_line("3", 3, 10, task="tokenize train"))
    watch.finish(succeeded=False)
    assert published[-1] == (30.0, "tokenize: tokenize train 30% (3/10 batch) (failed)")


def test_a_publishing_failure_is_said_once_and_never_stops_the_stage():
    logged: list[str] = []
    calls: list[float] = []

    def unreachable(percent: float, text: str) -> None:
        calls.append(percent)
        raise ConnectionError("Prefect API away")

    clock = Clock()
    watch = StageWatch("synthesize", logged.append, unreachable, clock=clock)
    clock.now += progress.PUBLISH_INTERVAL_S
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


def test_the_trainer_callback_reports_steps_from_the_resumed_one_on_the_main_process_only(
        events_mode: None, capsys: pytest.CaptureFixture):
    from transformers import TrainerControl, TrainerState

    for zero in (True, False):
        callback = progress.trainer_callback()
        state = TrainerState(max_steps=4, global_step=1, is_world_process_zero=zero)
        callback.on_train_begin(None, state, TrainerControl())
        for step in (2, 3, 4):
            state.global_step = step
            callback.on_step_end(None, state, TrainerControl())
        callback.on_train_end(None, state, TrainerControl())
        sent = events(capsys.readouterr().out)
        if zero:
            assert [(e["task"], e["done"], e["total"]) for e in sent][0] == ("train", 1, 4)
            assert sent[-1]["end"] is True and sent[-1]["done"] == 4
        else:
            assert sent == []
