import pytest

from bayling.evaluate.generation import clean_output, generate


@pytest.mark.parametrize(
    "raw, clean",
    [("  Bonjour le monde \n\nSecond line", "Bonjour le monde"), ("\n\n  a\tb  ", "a b"), ("", ""), ("   \n ", "")],
)
def test_clean_output(raw, clean):
    assert clean_output(raw) == clean


def test_batched_generation_matches_one_at_a_time(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts = [
        [{"role": "user", "content": "Provide the French translation for this sentence: Hello."}],
        [{"role": "user", "content": "Provide the Swahili translation for this sentence: Wash your hands often with soap and water."}],
        [{"role": "user", "content": "Hi"}],
    ]
    batched = generate(model, tokenizer, prompts, batch_size=3, max_new_tokens=6)
    single = [generate(model, tokenizer, [p], batch_size=1, max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert all(text for text in batched)
    assert tokenizer.padding_side == "right"  # restored after generation
