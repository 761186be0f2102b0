import pytest

from bayling.models.generation import LINE_BREAK, clean_output, generate


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


def feed(criterion, tokenizer, texts: list[str]) -> list[int]:
    """Feed each row's tokens one step at a time, as generate does; return the step each row stopped at (-1: never)."""
    import torch

    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(r) for r in rows)
    rows = [r + [tokenizer.eos_token_id] * (width - len(r)) for r in rows]
    stopped = [-1] * len(rows)
    for step in range(width):
        done = criterion(torch.tensor([r[: step + 1] for r in rows]), None)
        for i, flag in enumerate(done.tolist()):
            if flag and stopped[i] < 0:
                stopped[i] = step
    return stopped


def test_first_line_stop_ends_a_row_at_the_line_break_after_its_first_text(tokenizer):
    from bayling.models.generation import first_line_stop

    texts = ["\n\n  Bonjour le monde.\nSecond line that is never kept", "Habari\u2028za asubuhi", "一行\n", "no break at all"]
    stopped = feed(first_line_stop(tokenizer)(), tokenizer, texts)
    for text, step in zip(texts[:3], stopped[:3]):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        # it stops on the token that ends the first line of text, never earlier: what clean_output keeps is all there
        assert clean_output(tokenizer.decode(ids[: step + 1])) == clean_output(text)
        assert not LINE_BREAK.search(tokenizer.decode(ids[:step]).lstrip())
    assert stopped[0] < len(tokenizer(texts[0], add_special_tokens=False)["input_ids"]) - 3  # well before the second line ends
    assert stopped[3] == -1


def test_first_line_only_keeps_every_cleaned_output_and_generates_less(tiny_model_dir, tokenizer_dir, tmp_path):
    """A random model that babbles words and line breaks (a wide initialisation): stopping at the first line
    changes no cleaned output, and the batch ends sooner."""
    from conftest import make_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = make_tiny_model(tokenizer_dir, tmp_path / "babbler", initializer_range=0.2, seed=2)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompts = [[{"role": "user", "content": f"Provide the French translation for this sentence: {text}"}]
               for text in ("Hello.", "Wash your hands.", "Stay at home if you feel unwell.", "Cover your cough.", "Thank you.")]
    full = generate(model, tokenizer, prompts, batch_size=5, max_new_tokens=48)
    assert sum(bool(LINE_BREAK.search(t.lstrip())) for t in full) >= 2  # this seed's babble has line breaks to stop at
    first = generate(model, tokenizer, prompts, batch_size=5, max_new_tokens=48, first_line_only=True)
    assert [clean_output(t) for t in first] == [clean_output(t) for t in full]
    assert all(full_text.startswith(first_text) for full_text, first_text in zip(full, first))
    assert sum(map(len, first)) < sum(map(len, full))


def test_a_budget_per_row_gives_each_row_what_that_limit_alone_gives(tiny_model_dir):
    """Rows of one batch with budgets 3, 11, 6 and 1: each output equals a run of that row alone with max_new_tokens
    equal to its budget."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts = [[{"role": "user", "content": f"Provide the French translation for this sentence: sentence number {i}{' more' * i}."}]
               for i in range(4)]
    budgets = [3, 11, 6, 1]
    together = generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=budgets)
    alone = [generate(model, tokenizer, [p], batch_size=1, max_new_tokens=b)[0] for p, b in zip(prompts, budgets)]
    assert together == alone
    assert generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=11) != together  # the budgets did cut rows
    with pytest.raises(ValueError, match="one token budget per conversation"):
        generate(model, tokenizer, prompts, max_new_tokens=budgets[:2])


def test_a_row_caught_in_a_loop_stops_early_and_only_caught_rows_can_differ(tiny_model_dir, monkeypatch):
    """The tiny random model repeats itself: with stop_loops a caught row stops and its loop is written on, so the
    batch needs fewer forward passes. A row never caught is exactly what full greedy decoding gives, and a caught
    one agrees with it up to where it was caught. (Whether a loop then holds is the model's business: this
    one's newlines give way to a word after 73 tokens; benchmarks/generate.py counts it on SmolLM2.)"""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bayling.models import generation

    caught: list[dict] = []

    class Recording(generation.LoopStop):
        def __init__(self, ended, already=None):  # type: ignore[no-untyped-def]
            super().__init__(ended, already)
            self.tokens: dict[int, list[int]] = {}
            caught.append(self.tokens)

        def __call__(self, input_ids, scores, **kwargs):  # type: ignore[no-untyped-def]
            done = super().__call__(input_ids, scores, **kwargs)
            for row, (at, _) in self.loops.items():
                self.tokens.setdefault(row, input_ids[row, self.prompt_width :][:at].tolist())
            return done

    monkeypatch.setattr(generation, "LoopStop", Recording)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts = [[{"role": "user", "content": f"Provide the French translation for this sentence: item {i}{' word' * i}."}]
               for i in range(6)]
    limits = [120, 90, 120, 60, 120, 100]
    calls = []
    hook = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        full = generate(model, tokenizer, prompts, batch_size=6, max_new_tokens=limits)
        full_calls, calls[:] = len(calls), []
        stopped = generate(model, tokenizer, prompts, batch_size=6, max_new_tokens=limits, stop_loops=True)
        stopped_calls = len(calls)
    finally:
        hook.remove()
    assert stopped_calls < 0.6 * full_calls, (stopped_calls, full_calls)
    (tokens,) = caught
    order = sorted(range(6), key=lambda i: -len(tokenizer(tokenizer.apply_chat_template(prompts[i], add_generation_prompt=True,
                                                                                          tokenize=False))["input_ids"]))
    caught_prompts = {order[row]: tokenizer.decode(ids, skip_special_tokens=True) for row, ids in tokens.items()}
    assert caught_prompts
    for i in range(6):
        if i not in caught_prompts:
            assert stopped[i] == full[i]
        else:  # up to where it was caught, the row said what full decoding says
            assert stopped[i].startswith(caught_prompts[i]) and full[i].startswith(caught_prompts[i])
    with pytest.raises(ValueError, match="stop_loops needs greedy"):
        generate(model, tokenizer, prompts, num_beams=2, stop_loops=True)


def test_regrouping_carries_the_rows_still_going_into_a_later_batch_and_their_outputs_stay(tiny_model_dir):
    """Twelve prompts, batches of 4, budgets from 2 to 40 tokens: with regroup_below 0.5, a batch stops once two of
    its rows are done and the two still going carry on, from their prompt and the tokens they have, beside the rows
    other batches left. Every row ends with what it says without regrouping (fp32: re-reading the prompt and the
    tokens gives the same next token as the cache did), and the rows computed in all forward passes are fewer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts = [[{"role": "user", "content": f"Provide the French translation for this sentence: item {i}{' word' * (i % 5)}."}]
               for i in range(12)]
    budgets = [2, 40, 5, 30, 3, 25, 8, 40, 2, 35, 6, 20]
    def run(regroup: float) -> tuple[list[str], int]:
        widths: list[int] = []
        pre = model.register_forward_pre_hook(lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[0]),
                                              with_kwargs=True)
        try:
            out = generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=budgets, stop_loops=True, regroup_below=regroup)
        finally:
            pre.remove()
        return out, sum(widths)

    plain, plain_rows = run(0.0)
    regrouped, regrouped_rows = run(0.5)
    assert regrouped == plain
    assert regrouped_rows < 0.8 * plain_rows, (regrouped_rows, plain_rows)
    with pytest.raises(ValueError, match="regroup_below needs greedy"):
        generate(model, tokenizer, prompts, num_beams=2, regroup_below=0.5)
