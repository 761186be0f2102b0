"""COMET, when a local checkpoint is configured (the unbabel-comet package and evaluate.comet_model);
otherwise a note says why it was skipped."""

from __future__ import annotations

from bayling.config.evaluate import EvaluateParams
from bayling.core.metric_keys import score_key
from bayling.evaluate.compare import Comparison, TestSets


def comet_scores(params: EvaluateParams, test_sets: TestSets, hypotheses: dict[str, dict[str, dict[str, list[str]]]]) -> Comparison:
    """COMET per model, test set and direction, from a local checkpoint (evaluate.comet_model)."""
    out = Comparison()
    if not params.comet_model:
        out.notes.append("COMET skipped: no local COMET checkpoint configured (evaluate.comet_model)")
        return out
    try:
        from comet import load_from_checkpoint  # type: ignore[import-not-found]
    except ImportError:
        out.notes.append("COMET skipped: the unbabel-comet package is not installed")
        return out
    model = load_from_checkpoint(params.comet_model)
    for label, by_set in hypotheses.items():
        for name, by_direction in by_set.items():
            for direction, hyp in by_direction.items():
                items = test_sets[name][direction]
                data = [{"src": i.source, "mt": h, "ref": i.reference} for i, h in zip(items, hyp)]
                score = model.predict(data, batch_size=params.batch_size, gpus=0).system_score
                out.metrics[score_key(name, direction, label, "comet")] = round(float(score), 4)
    return out
