"""The teacher path against a real OpenAI-compatible server on loopback: `transformers serve` with a tiny model."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import give_base_tokenizer, run_stage_here
from servers import free_port

from bayling.core.chat_client import ChatSettings, ChatStats, ResponseCache, complete

pytestmark = pytest.mark.integration
SECRET = "sk-test-DO-NOT-LEAK-7f3a9c"


def served_requests(server) -> int:
    return server["log"].read_text(errors="replace").count("POST /v1/chat/completions")


def settings(server, **overrides) -> ChatSettings:
    return ChatSettings(**{"base_url": server["base_url"], "model": server["model"], "max_tokens": 16, **overrides})


def test_completions_are_cached_by_request(teacher_server, tmp_path: Path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    requests = [(("user", f"Say something about number {i}."),) for i in range(3)] + [(("user", "Say something about number 0."),)]
    before = served_requests(teacher_server)
    stats = ChatStats()
    first = complete(settings(teacher_server), requests, cache, stats)
    assert all(isinstance(text, str) for text in first) and first[0] == first[3]
    assert (stats.requested, stats.completed, stats.failed) == (3, 3, 0)
    assert served_requests(teacher_server) - before == 3
    again = ChatStats()
    assert complete(settings(teacher_server), requests, cache, again) == first
    assert (again.requested, again.cache_hits) == (0, 4)
    assert served_requests(teacher_server) - before == 3


def test_unreachable_endpoint_is_retried_then_reported(tmp_path: Path):
    dead = ChatSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=2, timeout_s=2)
    stats = ChatStats()
    out = complete(dead, [(("user", "hello"),)], ResponseCache(tmp_path / "c.sqlite"), stats)
    assert out == [None]
    assert (stats.requested, stats.failed, stats.retries) == (1, 1, 2)  # three HTTP attempts in all, by the SDK
    assert stats.errors == {"APIConnectionError": 1}


def test_rejected_request_is_not_retried(teacher_server, tmp_path: Path):
    stats = ChatStats()
    wrong_model = settings(teacher_server, model="not-the-served-model", max_retries=3)
    assert complete(wrong_model, [(("user", "hello"),)], ResponseCache(tmp_path / "c.sqlite"), stats) == [None]
    assert (stats.failed, stats.retries) == (1, 0)


def _teacher_project(project: Path, server, tokenizer_dir: Path, general: bool = False) -> None:
    give_base_tokenizer(project, tokenizer_dir)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"]["sources"][0]["max_rows"] = 60
    synth = params["synthesize"]
    synth["interactive"] = {"per_row": 1, "max_followups": 1,
                            "task_weights": {"change_register": 1000, "explain_word_choice": 1000, "shorten": 1000}}
    synth["teacher"] = {"enabled": True, "base_url": server["base_url"], "model": server["model"],
                        "api_key_env": "TEACHER_API_KEY", "max_concurrency": 1, "max_tokens": 48, "max_retries": 1,
                        "timeout_s": 30, "cache_path": ".cache/teacher.sqlite"}
    synth["mix"] = {"mode": "report", "ratios": {"any": {"zh": 0.432, "en": 0.262, "cross": 0.306}}}
    if general:
        chats = [{"id": i, "messages": [{"role": "user", "content": f"Give me tip number {i} for staying healthy."},
                                        {"role": "assistant", "content": f"Tip {i}: sleep well and drink water."}]} for i in range(6)]
        (project / "data" / "general_en.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
        synth["general"] = {"sources": [{"name": "tips", "path": "data/general_en.jsonl", "language": "eng_Latn"}],
                            "cross_lingual_targets": ["fra_Latn"]}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def _env() -> dict:
    return dict(os.environ, TEACHER_API_KEY=SECRET)


def test_teacher_end_to_end_and_the_key_never_leaks(project_copy: Path, teacher_server, tokenizer_dir: Path):
    _teacher_project(project_copy, teacher_server, tokenizer_dir, general=True)
    assert run_stage_here(project_copy, "fetch").returncode == 0
    result = subprocess.run([sys.executable, "-m", "stages.synthesize"], cwd=project_copy, capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr
    card = json.loads((project_copy / "data/synth/card.json").read_text())
    teacher_turns = sum(
        card["splits"][s]["per_task"].get(t, 0) for s in card["splits"] for t in ("change_register", "explain_word_choice", "shorten")
    )
    rejected = sum(card["interactive"]["teacher_rejected"].values())
    assert card["teacher"]["interactive"]["completed"] > 0
    assert teacher_turns > 0, card["interactive"]
    assert teacher_turns + rejected == card["teacher"]["interactive"]["completed"] + card["teacher"]["interactive"]["cache_hits"]
    assert card["general"].get("teacher cross-lingual chats", 0) > 0
    for path in (
        list((project_copy / "data").rglob("*")) + list((project_copy / "reports").rglob("*")) + [project_copy / ".cache/teacher.sqlite"]
    ):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in result.stderr + result.stdout


def test_killed_run_resumes_from_the_cache(project_copy: Path, teacher_server, tokenizer_dir: Path):
    _teacher_project(project_copy, teacher_server, tokenizer_dir)
    assert run_stage_here(project_copy, "fetch").returncode == 0
    cache_file = project_copy / ".cache" / "teacher.sqlite"
    before = served_requests(teacher_server)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.synthesize"], cwd=project_copy, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    cached = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if cache_file.exists():
            try:
                cached = sqlite3.connect(cache_file).execute("SELECT COUNT(*) FROM completions").fetchone()[0]
            except sqlite3.OperationalError:
                cached = 0
            if cached >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make the teacher slower"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cached = len(ResponseCache(cache_file))
    asked_before_kill = served_requests(teacher_server) - before
    assert cached >= 3 and asked_before_kill >= cached

    resumed = run_stage_here(project_copy, "synthesize", env=_env())
    assert resumed.returncode == 0, resumed.stderr
    card = json.loads((project_copy / "data/synth/card.json").read_text())
    stats = card["teacher"]["interactive"]
    asked_on_resume = served_requests(teacher_server) - before - asked_before_kill
    assert stats["cache_hits"] == cached
    assert asked_on_resume == stats["requested"] == stats["completed"] + stats["failed"]
    assert stats["requested"] + stats["cache_hits"] == len(ResponseCache(cache_file)) + stats["failed"]
