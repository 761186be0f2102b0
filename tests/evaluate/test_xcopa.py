from pathlib import Path

from bayling.evaluate.xcopa import ChoiceItem, accuracy, connectors, evaluate_choices, read_xcopa, xcopa_item

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
ROW = {
    "premise": "Mwanaume alifungua bomba la maji.",
    "choice1": "Choo kilijaa maji.",
    "choice2": "Maji yalitiririka.",
    "question": "effect",
    "label": 1,
}


def test_every_xcopa_language_has_connectors():
    langs = {p.name for p in (SHARED / "mc/xcopa/data").iterdir()}
    assert langs <= set(connectors())


def test_items_read_as_continuations():
    # lm-eval's xcopa task: premise.strip()[:-1] + " " + connector; choices lower-cased at the first character
    item = xcopa_item(ROW, "sw")
    assert item.context == "Mwanaume alifungua bomba la maji kwa hiyo"
    assert item.choices == ("choo kilijaa maji.", "maji yalitiririka.") and item.label == 1
    assert item.requests()[1] == ("Mwanaume alifungua bomba la maji kwa hiyo", " maji yalitiririka.")
    zh = xcopa_item({**ROW, "premise": "那人打开水龙头。", "choice1": "厕所满了。", "choice2": "水流出来。", "question": "cause"}, "zh")
    assert zh.context == "那人打开水龙头 因为" and zh.choices == ("厕所满了。", "水流出来。")
    tr = xcopa_item({**ROW, "choice1": "Işık yandı.", "choice2": "İyi oldu."}, "tr")
    assert tr.choices == ("işık yandı.", "i\u0307yi oldu.")  # str.lower, as lm-eval: no Turkish casing


def test_accuracy_and_length_normalisation():
    items = [ChoiceItem("c", ("a", "bbbbbb"), 0), ChoiceItem("c", ("a", "b"), 1)]
    scores = [-2.0, -3.0, -4.0, -1.0]  # acc_norm divides by the choice's length in characters
    assert accuracy(items, scores) == 1.0
    assert accuracy(items, scores, length_normalized=True) == 0.5


def test_xcopa_scorer_runs_on_the_tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    items = read_xcopa(SHARED / "mc/xcopa/data/sw/val.sw.jsonl", "sw", limit=24)
    batched = evaluate_choices(model, tokenizer, items, batch_size=16)
    single = evaluate_choices(model, tokenizer, items, batch_size=1)
    assert 0.0 <= batched <= 1.0 and batched == single
