"""Every benchmark runs end to end in a short configuration and prints the JSON keys its README row and the
issues quote. The figures themselves live in benchmarks/README.md, never in a timed test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_script_here

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def last_json(script: str, *args: str) -> dict:
    """The benchmark's last line, run in this interpreter (`python <script> ...` through runpy): only its output's
    keys are checked here, so it need not pay a process's imports."""
    result = run_script_here(ROOT / script, *args, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_machine_limits():
    figures = last_json("benchmarks/machine.py")
    assert {"threads", "native_bf16", "peak_fp32_flops", "peak_bf16_flops", "copy_bytes_per_s"} <= set(figures)
    assert figures["peak_fp32_flops"] > 1e9 and figures["copy_bytes_per_s"] > 1e8


def test_train_throughput_short_run():
    figures = last_json("benchmarks/train_throughput.py", "--tiny", "--steps", "2", "--warmup", "1", "--conversations", "80",
                        "--max-seq-len", "256")
    assert {"ratio_vs_trl_best", "ratio_vs_trl_unpacked", "ratio_vs_full_logits", "mfu_vs_measured_peak", "measured_peak_flops",
            "flops_per_token", "sides", "model"} <= set(figures)
    assert set(figures["sides"]) == {"ours", "ours_full_logits", "trl_best", "trl_unpacked"}
    for side in figures["sides"].values():
        assert side["supervised_tokens"] > 0 and side["tokens"] > side["supervised_tokens"]
    assert figures["model"] == "tiny"


def test_generate_short_run(tiny_model_dir):
    figures = last_json("benchmarks/generate.py", "--model", str(tiny_model_dir), "--prompts", "2", "--batch-size", "2",
                        "--new-tokens", "2", "--per-direction", "1", "--eval-new-tokens", "4", "--eval-batch-size", "4",
                        "--before-batch-size", "4", "--flores-segments", "1")
    assert {"batched_tokens_per_s", "single_tokens_per_s", "ratio", "copy_bytes_per_s", "single_vs_bandwidth_bound",
            "eval_seconds_before", "eval_seconds_after", "eval_speedup", "eval_outputs_identical", "eval_bf16", "flores"} <= set(figures)
    assert figures["eval_outputs_identical"] is True and figures["eval_prompts"] == 12
    flores = figures["flores"]
    assert flores["prompts"] == 6 and {"seconds", "chrf_pp", "cut", "cut_looping", "grown"} <= set(flores["budgets"])
    assert flores["budgets"]["cut"] + flores["budgets"]["grown"] <= 6
    assert {"seconds", "seconds_without", "outputs_changed", "change", "interval", "p"} <= set(flores["regroup"])
    assert 0 <= flores["regroup"]["outputs_changed"] <= 6


def test_understanding_short_run(tiny_model_dir):
    figures = last_json("benchmarks/understanding.py", "--model", str(tiny_model_dir), "--languages", "sw", "--items", "4",
                        "--batch-size", "4")
    assert {"native_items_per_s", "lm_eval_items_per_s", "lm_eval_requests_items_per_s", "ratio_native_vs_lm_eval",
            "native_vs_compute_bound", "outcomes_equal", "belebele"} <= set(figures)
    assert figures["outcomes_equal"] is True and figures["documents"] == 4 and figures["requests"] == 8
    assert {"this_model_this_machine_h", "paper_model_this_machine_h", "paper_model_gpu_h"} <= set(figures["belebele"]["profile"])


def test_tokenize_pack_short_run():
    figures = last_json("benchmarks/tokenize_pack.py", "--conversations", "300", "--raw-limit", "300", "--naive-limit", "50",
                        "--max-seq-len", "1024", "--num-proc", "1")
    assert {"tokens_per_s", "raw_tokens_per_s", "naive_tokens_per_s", "ratio_vs_raw", "ratio_vs_naive", "fill_rate",
            "peak_rss_mb"} <= set(figures)


def test_synthesize_short_run():
    figures = last_json("benchmarks/synthesize.py", "--rows", "200", "--shard-size", "100")
    assert {"rows_per_s", "conversations_per_s", "peak_rss_mb", "identical"} <= set(figures) and figures["identical"] is True
