"""The evaluate stage's library entry: evaluate the models, check every output, then write the report."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bayling.config.base_model import BaseModelParams
from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.core.records import Conversation
from bayling.evaluate.evaluation import EvaluationResult, evaluate_models


def evaluate_to(
    out: Path,
    params: EvaluateParams,
    base_model: BaseModelParams,
    register: RegisterParams,
    root: Path,
    final_dir: Path,
    heldout: Iterable[Conversation] | None,
    tracking_uri: str,
) -> tuple[EvaluationResult, list[Path]]:
    """The evaluate stage's library entry: evaluate, check that every output belongs to its own item, and only
    then write the files into `out`. Returns the result and the report files to log."""
    from bayling.evaluate.outputs import write_outputs

    result = evaluate_models(params, base_model, register, root, final_dir, heldout, tracking_uri)
    return result, write_outputs(result, out)
