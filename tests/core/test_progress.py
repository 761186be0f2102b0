"""Progress: tqdm in a terminal, throttled event lines under the flow (tests/flows/test_stage_watch.py has the
flow's side, which reads them)."""

from __future__ import annotations

import io
import json

import pytest
from helpers import ManualClock

from bayling.core import progress
from bayling.core.progress import EVENT_PREFIX, Progress, track


def events(text: str) -> list[dict]:
    return [json.loads(line.split(EVENT_PREFIX, 1)[1]) for line in text.splitlines() if EVENT_PREFIX in line]


@pytest.fixture
def events_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.MODE_ENV, "events")


def test_events_are_throttled_to_each_ten_percent_when_updates_come_quickly(events_mode: None):
    stream, clock = io.StringIO(), ManualClock()
    with Progress(1000, "work", "row", stream=stream, clock=clock) as bar:
        for _ in range(1000):
            bar.update()
    sent = events(stream.getvalue())
    assert [e["done"] for e in sent] == [0, *range(100, 1001, 100), 1000]  # start, each 10%, end
    assert sent[-1].get("end") is True and all("end" not in e for e in sent[:-1])


def test_between_percent_steps_an_event_goes_out_once_the_interval_has_passed(events_mode: None):
    stream, clock = io.StringIO(), ManualClock()
    bar = Progress(1000, "work", stream=stream, clock=clock)
    bar.update()  # 0.1%: same step, no time passed
    clock.now += progress.EMIT_INTERVAL_S / 2
    bar.update()
    clock.now += progress.EMIT_INTERVAL_S / 2
    bar.update()  # the interval has passed since the start event
    assert [e["done"] for e in events(stream.getvalue())] == [0, 3]


def test_the_end_event_comes_even_when_fewer_items_came_than_announced(events_mode: None, capsys: pytest.CaptureFixture):
    assert list(track(iter(range(3)), 5, "shards", "shard")) == [0, 1, 2]
    last = events(capsys.readouterr().out)[-1]
    assert last["end"] is True and (last["done"], last["total"]) == (3, 5)  # the end, which the flow reads as 100%


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
