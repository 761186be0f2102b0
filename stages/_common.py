"""What every stage entry point shares: params loading, logging, and turning user errors into one clean message."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bayling.errors import PipelineError
from bayling.params import PARAMS_FILE, read_params_file, validate_sections

ROOT = Path(os.environ.get("BAYLING_ROOT", ".")).resolve()


def resolve(path: str | Path) -> Path:
    """A path from params.yaml: absolute as given, otherwise relative to the project root."""
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


def write_json(path: Path, payload: Any) -> None:
    from bayling.storage import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise PipelineError(f"{path.relative_to(ROOT)} not found: run the stage that makes {what} first")
    return json.loads(path.read_text("utf-8"))


def run_stage(stage: str, sections: list[str], body: Callable[..., None]) -> None:
    """Validate the stage's params sections, then run `body(**sections)`; user errors exit 2 without a traceback."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s [{stage}] %(message)s", stream=sys.stderr
    )
    for noisy in ("httpx", "urllib3", "botocore", "alembic", "filelock", "sacrebleu"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger(stage)
    try:
        data, text = read_params_file(ROOT / PARAMS_FILE)
        params = validate_sections(data, sections, text=text, file=PARAMS_FILE, root=ROOT)
        body(**params)
    except PipelineError as exc:
        log.error("%s", exc)
        sys.exit(2)


def track_stage(stage: str, experiment: str, params: dict[str, Any], metrics: dict[str, Any], artifacts: list[Path]) -> None:
    """A child run of the pipeline's parent run for a data stage: its params, counts and report files.
    Tracking trouble is a warning here, never a failed stage: the data on disk is the result."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    import mlflow

    from bayling.params import flatten
    from bayling.tracking import ResilientLogger, optional_stage_run

    logger = ResilientLogger()
    with optional_stage_run(ROOT, stage, experiment) as run:
        if run is None:
            return
        logger.log_params({f"{stage}.{k}": v for k, v in flatten(params).items()})
        logger.log_metrics(numbers(metrics))
        for artifact in artifacts:
            if artifact.is_file():
                logger._call(f"artifact {artifact.name}", mlflow.log_artifact, str(artifact), "report")
    if logger.failures:
        logging.getLogger(stage).warning("MLflow: %s", logger.summary())


def numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested report, under dotted keys (MLflow metrics)."""
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, item in value.items():
            out.update(numbers(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return {prefix: float(value)}
    return {}
