"""Stage 6, register: log models/final to MLflow as a pyfunc translator, register a version, set its alias.

    python -m stages.register

Reads models/final, reports/eval/{metrics,run}.json, reports/train/{run,metrics,drawn}.json,
reports/tokenize/composition.json, data/synth/card.json, params.yaml and dvc.lock, and writes the
Hugging Face model card models/final/README.md (also logged to the register run as model_card/README.md
and shown as the version's description).
Tags the version with the git commit, the md5 of every DVC out in dvc.lock, the params, and the
evaluation scores. Registering the same model files again reuses their version instead of adding one.
The gate in register.gate (minimum scores, required test sets, no significant drop against the
champion, nor below the base model on the headline test set) decides whether the version gets the
candidate alias; every rule's result goes to MLflow. Writes reports/register.json with the model name,
version, alias, MLflow run id and gate results (the failed rules named under gate.failed), and the
training mix as synthesized, tokenized and drawn by the train steps (`mix`; a cell that the drawn
supervised tokens miss by more than register.mix_tolerance_points is named under mix.misses and warned).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from bayling.config.loader import PARAMS_FILE, read_params_file
from bayling.config.register import RegisterParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from stages._common import project_root, read_json, run_stage, write_json

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("register")
FINAL = ROOT / "models" / "final"


def _optional_json(path: Path, label: str) -> dict:
    """A report that data made before it existed lacks: {} then (the card and summary leave the mix out)."""
    return read_json(path, label) if path.exists() else {}


def main(register: RegisterParams, tracking: TrackingParams) -> None:
    # MLflow nags about predict() type hints and input examples either way; neither applies to this flavour.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    from bayling.core.tracking import fail_fast, tracking_uri
    from bayling.register import gate
    from bayling.register.report import registration_report
    from bayling.register.run import RegisterInputs, register_model

    fail_fast()  # a re-run after an outage finds the version by its model hash instead of registering it twice
    if not FINAL.exists():
        raise PipelineError("models/final not found: run `python -m stages.train` first")
    inputs = RegisterInputs(
        metrics=read_json(ROOT / "reports" / "eval" / "metrics.json", "reports/eval/metrics.json (evaluate)"),
        train_run=read_json(ROOT / "reports" / "train" / "run.json", "reports/train/run.json (train)"),
        eval_run=read_json(ROOT / "reports" / "eval" / "run.json", "reports/eval/run.json (evaluate)"),
        params=read_params_file(ROOT / PARAMS_FILE)[0],
        data_card=read_json(ROOT / "data" / "synth" / "card.json", "data/synth/card.json (synthesize)"),
        train_metrics=read_json(ROOT / "reports" / "train" / "metrics.json", "reports/train/metrics.json (train)"),
        composition=_optional_json(ROOT / "reports" / "tokenize" / "composition.json", "reports/tokenize/composition.json (tokenize)"),
        drawn=_optional_json(ROOT / "reports" / "train" / "drawn.json", "reports/train/drawn.json (train)"),
    )
    result, rules, verdict, model_sha256 = register_model(register, tracking, inputs, ROOT, FINAL)
    for r in rules:
        log.info("gate %s %s: %s", r.rule, r.target, "pass" if r.passed else f"FAIL (value {r.value}, threshold {r.threshold}) {r.detail}")
    gate_passed = verdict["passed"]
    if gate.passed(rules) and not gate_passed:
        log.warning("this evaluation passes the gate, but an earlier register run of the same files failed it, and a failure "
                    "stands (approving needs --override-gate, which is recorded)")
    from bayling.register.training_mix import mix_report, summary_line

    mix = mix_report(inputs.composition, inputs.drawn, register.mix_tolerance_points)
    if mix:
        log.info(summary_line(mix))
        if mix["misses"]:
            log.warning("the train steps drew supervised tokens off the requested mix by more than %s points "
                        "(register.mix_tolerance_points): %s", mix["tolerance_points"], "; ".join(mix["misses"]))
    write_json(ROOT / "reports" / "register.json", registration_report(result, rules, verdict, model_sha256, tracking_uri(ROOT), mix))
    verb = "registered" if result.created else "re-used"
    if gate_passed:
        log.info("%s %s version %s with alias '%s' (run %s)", verb, result.model_name, result.version, result.alias, result.run_id)
    else:
        log.warning("%s %s version %s, but the gate failed: no '%s' alias (run %s)", verb, result.model_name, result.version,
                    register.alias, result.run_id)


if __name__ == "__main__":
    run_stage("register", ["register", "tracking"], main)
