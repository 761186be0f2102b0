"""One step of the train stage's trainer under DeepSpeed ZeRO-2 and ZeRO-3 on two CPU ranks equals one process's
step on the same rows. Its own file so that `make test` can run it beside the rest of the train stage's tests."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def eight_packed_rows(tokenizer, tmp_path_factory) -> Path:
    from datasets import Dataset
    from helpers import encode

    from bayling.tokenize.packing import best_fit_decreasing, pack_rows

    chats = [[{"role": "user", "content": f"Provide the French translation for this sentence: line {i} " + "mot " * (i % 7)},
              {"role": "assistant", "content": "Bonjour " * (1 + i % 5) + f"ligne {i}."}] for i in range(24)]
    encoded = encode(tokenizer, chats)
    rows = pack_rows([(e.input_ids, e.labels) for e in encoded], best_fit_decreasing([len(e) for e in encoded], 180))[:8]
    assert len(rows) == 8
    out = tmp_path_factory.mktemp("eight") / "data"
    Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids} for r in rows]).save_to_disk(str(out))
    return out


METHODS = ("full", "lora")


def _one_step(tiny_model_dir: Path, data: Path, out: Path, zero: str, methods: tuple[str, ...]) -> dict[str, dict]:
    """Step 1 of each method, one after the other in one launch: {method: {"loss", "grads"}}."""
    import torch

    script = Path(__file__).with_name("distributed_step.py")
    common = ["--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--zero", zero, "--method", *methods]
    if zero == "none":
        command = [sys.executable, str(script), *common, "--batch", "8"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *common,
                   "--batch", "4"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(out.parent / "ext")))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return {method: torch.load(out / f"{method}.pt") for method in methods}


@pytest.fixture(scope="module")
def one_steps(tiny_model_dir, eight_packed_rows, tmp_path_factory) -> dict[str, dict[str, dict]]:
    """{zero: {method: step 1}} for one process and ZeRO-2/3 on 2 ranks. One process and ZeRO-2 take both methods in
    one launch each; ZeRO-3 needs a launch per method, because its model-construction state outlives the first
    trainer (LoRA after full in one ZeRO-3 process got gradients 0.17 away from the single process's)."""
    work = tmp_path_factory.mktemp("one-step")
    steps = {zero: _one_step(tiny_model_dir, eight_packed_rows, work / zero, zero, METHODS) for zero in ("none", "zero2")}
    steps["zero3"] = {m: _one_step(tiny_model_dir, eight_packed_rows, work / f"zero3-{m}", "zero3", (m,))[m] for m in METHODS}
    return steps


@pytest.mark.parametrize("method", METHODS)
def test_zero2_and_zero3_step_equals_the_single_process_step(one_steps, method):
    """The supervised-positions-only head under ZeRO-2 and ZeRO-3 on 2 ranks: step 1's loss within 1e-5 and every
    gradient within 1e-5 (absolute) of one process taking the same 8 rows as one batch."""
    single = one_steps["none"][method]
    nonzero = [k for k, g in single["grads"].items() if g.abs().sum() > 0]
    # every weight gets a gradient in full fine-tuning; under LoRA only B does at step 1 (B starts at zero, so A's is zero)
    assert nonzero == list(single["grads"]) if method == "full" else nonzero and all("lora_B" in k for k in nonzero)
    for zero in ("zero2", "zero3"):
        sharded = one_steps[zero][method]
        assert sharded["loss"] == pytest.approx(single["loss"], abs=1e-5), zero
        assert sharded["grads"].keys() == single["grads"].keys(), zero
        worst = max((sharded["grads"][k].reshape(g.shape) - g).abs().max().item() for k, g in single["grads"].items())
        assert worst < 1e-5, (zero, worst)


