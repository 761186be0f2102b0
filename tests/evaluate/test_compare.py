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
