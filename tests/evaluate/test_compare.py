from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.evaluate.compare import against_champion


def test_the_review_is_told_why_there_are_no_champion_outputs(tmp_path):
    off = against_champion(EvaluateParams(compare_with_champion=False), RegisterParams(), {}, {}, "unused://")
    assert off.absence == "champion comparison off" and off.hypotheses == {} and off.notes == []

    # a registry that cannot be opened is a note and a label, never a failed evaluation
    unreadable = tmp_path / "registry"
    unreadable.write_text("not a folder")
    lost = against_champion(EvaluateParams(), RegisterParams(), {}, {}, f"sqlite:///{unreadable}/mlflow.db")
    assert lost.absence == "champion unreachable" and lost.metrics == {} and lost.hypotheses == {}
    assert len(lost.notes) == 1 and lost.notes[0].startswith("champion comparison skipped:")


def test_stored_champion_outputs_are_reused_only_for_the_very_same_items(tmp_path):
    """Same ids, sources, references and prompts, in order; predictions stored before ids named their direction,
    or under another prompt wording, are translated again."""
    import json

    from bayling.evaluate.compare import stored_outputs
    from bayling.evaluate.test_sets import file_items

    items = file_items("flores", ["Hello.", "Thank you."], [["Bonjour.", "Merci."]], "eng_Latn", "fra_Latn")
    rows = [{"id": i.id, "source": i.source, "reference": i.reference, "prompt": i.prompt, "hypothesis": f"out {k}", "raw": ""}
            for k, i in enumerate(items)]

    def stored(changed_rows) -> list[str] | None:
        path = tmp_path / "eng_Latn-fra_Latn.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in changed_rows), "utf-8")
        return stored_outputs(path, items)

    assert stored(rows) == ["out 0", "out 1"]
    assert stored([{**r, "id": f"flores:{k + 1}"} for k, r in enumerate(rows)]) is None  # the old ids
    zh_prompt = file_items("flores", ["Hello.", "Thank you."], [["Bonjour.", "Merci."]], "eng_Latn", "fra_Latn",
                           instruction_language="zh")
    assert stored([{**r, "prompt": z.prompt} for r, z in zip(rows, zh_prompt)]) is None
    assert stored([{k: v for k, v in r.items() if k != "prompt"} for r in rows]) is None
    assert stored(rows[::-1]) is None and stored(rows[:1]) is None
    assert stored_outputs(tmp_path / "missing.jsonl", items) is None
