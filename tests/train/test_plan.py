"""The capacity plan on public model shapes (config dicts only, built on the meta device: no weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import run_stage_here

from bayling.config.train import TrainParams
from bayling.core.errors import PipelineError
from bayling.train.plan import GIB, check_fits, make_plan, meta_model, shape_of, smallest_change_that_fits

# Published shapes (config.json of meta-llama/Meta-Llama-3-8B and meta-llama/Llama-2-13b-hf) and parameter counts.
LLAMA3_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False)
LLAMA2_13B = dict(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                  num_key_value_heads=40, max_position_embeddings=4096, tie_word_embeddings=False)
PUBLISHED = {"llama3-8b": 8_030_261_248, "llama2-13b": 13_015_864_320}


def config(shape: dict):
    from transformers import LlamaConfig

    return LlamaConfig(**shape)


@pytest.mark.parametrize("name, shape", [("llama3-8b", LLAMA3_8B), ("llama2-13b", LLAMA2_13B)])
def test_parameters_counted_on_the_meta_device_match_the_published_counts(name, shape):
    counted = shape_of(meta_model(config(shape), TrainParams()))
    assert counted.parameters == PUBLISHED[name]
    assert counted.trainable == counted.parameters
    assert counted.largest_layer == shape["vocab_size"] * shape["hidden_size"]  # the embedding (or the head)


def test_lora_trainable_parameters_are_the_adapters():
    lora = shape_of(meta_model(config(LLAMA3_8B), TrainParams(method="lora", lora={"r": 16, "alpha": 32})))
    per_layer = 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)  # q, o; k, v; gate, up, down
    assert lora.trainable == 32 * per_layer


@pytest.mark.parametrize("name, shape", [("llama3-8b", LLAMA3_8B), ("llama2-13b", LLAMA2_13B)])
@pytest.mark.parametrize("gpus, nodes", [(8, 1), (8, 2)])
def test_zero_model_states_agree_with_deepspeeds_estimators(name, shape, gpus, nodes):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    total = PUBLISHED[name]
    _, zero2 = estimate_zero2_model_states_mem_needs(total, gpus, nodes, cpu_offload=False)
    _, zero3, _ = estimate_zero3_model_states_mem_needs(total, shape["vocab_size"] * shape["hidden_size"], gpus, nodes,
                                                        cpu_offload=False, cpu_offload_params=False, zero_init=True)
    for stage, expected in (("zero2", zero2), ("zero3", zero3)):
        params = TrainParams(deepspeed=stage, num_gpus=gpus, num_nodes=nodes, precision="bf16")
        plan = make_plan(config(shape), params, 4096, gpu_memory_gib=80, peak_tflops=989.4, mfu=0.4)
        assert plan.bytes_per_gpu["model states"] == pytest.approx(expected, rel=0.10), stage


def test_the_plan_reports_tokens_flops_and_time():
    params = TrainParams(deepspeed="zero3", num_gpus=8, precision="bf16", per_device_batch_size=2, gradient_accumulation_steps=4,
                         gradient_checkpointing=True)
    plan = make_plan(config(LLAMA3_8B), params, 4096, gpu_memory_gib=80, peak_tflops=989.4, mfu=0.4, epoch_tokens=10**9)
    assert plan.tokens_per_step == 2 * 4096 * 4 * 8
    per_token = 6 * (PUBLISHED["llama3-8b"] - 128256 * 4096) + 12 * 32 * 4096 * 4096  # untied input embeddings are a lookup
    assert plan.flops_per_step == pytest.approx(per_token * plan.tokens_per_step)
    assert plan.seconds_per_step == pytest.approx(plan.flops_per_step / (8 * 989.4e12 * 0.4))
    assert plan.epoch_steps == -(-10**9 // plan.tokens_per_step) and plan.epoch_hours > 0
    assert plan.fits and 10 < plan.total_gib < 80
    text = plan.describe()
    assert "model states" in text and "activations" in text and "tokens per step: 262,144" in text and "per epoch" in text


def test_an_oversized_configuration_is_refused_with_the_smallest_change_that_fits():
    params = TrainParams(method="full", precision="bf16", per_device_batch_size=8, num_gpus=1)
    plan = make_plan(config(LLAMA2_13B), params, 4096, gpu_memory_gib=80, peak_tflops=989.4, mfu=0.4)
    assert plan.fits is False and plan.total_gib > 200  # 16 bytes a parameter alone is 194 GiB
    with pytest.raises(PipelineError, match="does not fit") as refused:
        check_fits(plan, config(LLAMA2_13B), params, 4096, gpu_memory_gib=80, peak_tflops=989.4, mfu=0.4)
    label, fitted = smallest_change_that_fits(config(LLAMA2_13B), params, 4096, gpu_memory_gib=80, peak_tflops=989.4, mfu=0.4)
    assert label in str(refused.value) and fitted.fits and fitted.total_gib <= 80 * 0.9
    # on one GPU, 13B in full needs its optimiser states offloaded, its activations checkpointed and smaller micro-batches
    assert "train.gradient_checkpointing: true" in label and "zero3_offload" in label, label
    assert fitted.bytes_per_gpu["model states"] < 40 * GIB
    # one change is enough where one is enough: 8B on 8 GPUs with ZeRO-2 and a batch that overflows only through activations
    big_batch = TrainParams(deepspeed="zero2", num_gpus=8, precision="bf16", per_device_batch_size=8)
    label, fitted = smallest_change_that_fits(config(LLAMA3_8B), big_batch, 4096, gpu_memory_gib=80, peak_tflops=989.4, mfu=0.4)
    assert label == "train.gradient_checkpointing: true" and fitted.fits


def test_plan_command_on_the_project(project_copy: Path, tiny_model_dir: Path):
    params = yaml.safe_load((project_copy / "params.yaml").read_text())
    params["base_model"].update({"source": "hf", "hf_id": str(tiny_model_dir)})
    params["train"]["plan"] = {"gpu_memory_gib": 24, "gpu": "L4", "mfu": 0.3}
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shown = run_stage_here(project_copy, "train", "--plan")
    assert shown.returncode == 0, shown.stderr
    assert "memory per GPU:" in shown.stdout and "of 24 GiB declared" in shown.stdout and "s per step" in shown.stdout
    params["train"]["plan"]["gpu_memory_gib"] = 0.001
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    refused = run_stage_here(project_copy, "train", "--plan")
    assert refused.returncode == 2 and "does not fit" in refused.stderr and "Traceback" not in refused.stderr


def test_epochs_become_steps():
    params = TrainParams(epochs=3, per_device_batch_size=4, gradient_accumulation_steps=2, num_gpus=8)
    # 100 rows over 8 ranks: 13 each (padded), 4 micro-batches of 4, 2 optimizer steps per epoch
    assert params.steps_for(100) == 6
    assert params.steps_for(10_000) == 3 * 157  # 1250 rows a rank, 313 micro-batches, 157 steps
    assert TrainParams(epochs=0.5, per_device_batch_size=4).steps_for(100) == 13
    assert TrainParams(max_steps=7).steps_for(10_000) == 7
