"""The GPU self-check: one clear line where there is no GPU, and every check exercised on the CPU (dry run)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_without_cuda_it_says_so_in_one_line(repo_root):
    result = subprocess.run([sys.executable, "-m", "tools.gpu_check"], cwd=repo_root, capture_output=True, text=True,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0
    (line,) = result.stdout.strip().splitlines()
    report = json.loads(line)
    assert report["cuda"] is False and "no CUDA device" in report["message"]


def test_every_check_runs_on_the_cpu_in_a_dry_run(repo_root, tmp_path):
    out = tmp_path / "report.json"
    # ZeRO-3 only: the train stage's tests already launch ZeRO-2 on two CPU ranks, and ZeRO-3 is the stage whose
    # export has to gather the sharded weights
    command = [sys.executable, "-m", "tools.gpu_check", "--cpu-dry-run", "--steps", "4", "--zero", "zero3", "--out", str(out)]
    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads(out.read_text())
    assert report["ok"] and set(report["training"]) == set(report["packing"]) == {"sdpa", "eager"}
    assert all(len(r["tokens_per_s_per_step"]) >= 3 for r in report["training"].values())
    for result_ in report["packing"].values():
        assert result_["max_logit_difference"] < result_["tolerance"]
        assert result_["without_boundaries"] < result_["tolerance"]  # SDPA and eager see boundaries in position ids
    assert set(report["zero"]) == {"zero3"}
    assert report["zero"]["zero3"]["processes"] == 2 and report["zero"]["zero3"]["complete"] and report["zero"]["zero3"]["trained"]
    assert report["generation"]["prompts"] == 32 and report["seconds"] < 600
