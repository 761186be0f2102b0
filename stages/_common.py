"""What every stage entry point shares: params loading, logging, and turning user errors into one clean message."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bayling.config.loader import PARAMS_FILE, read_params_file, validate_sections
from bayling.core.errors import PipelineError
from bayling.core.jsonl import write_json
from bayling.core.paths import project_root
from bayling.core.paths import resolve as resolve_in

# No module-level project root here: a stage module reads `project_root()` each time it runs (as `python -m
# stages.x`, or through runpy in the tests' own interpreter), while this module is imported once per process.
__all__ = ["project_root", "read_json", "resolve", "run_stage", "track_stage", "write_json"]


def resolve(path: str | Path) -> Path:
    """A path from params.yaml: absolute as given, otherwise relative to the project root."""
    return resolve_in(path, project_root())


def read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise PipelineError(f"{path.relative_to(project_root())} not found: run the stage that makes {what} first")
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
        root = project_root()
        data, text = read_params_file(root / PARAMS_FILE)
        params = validate_sections(data, sections, text=text, file=PARAMS_FILE, root=root)
        body(**params)
    except PipelineError as exc:
        log.error("%s", exc)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C: the stage's MLflow run has been ended as failed on the way out
        log.error("interrupted")
        sys.exit(130)


def track_stage(stage: str, experiment: str, params: dict[str, Any], metrics: dict[str, Any], artifacts: list[Path]) -> None:
    """A child run of the pipeline's parent run for a data stage: its params, counts and report files.
    Tracking trouble is a warning here, never a failed stage: the data on disk is the result."""
    from bayling.config.loader import flatten
    from bayling.core.tracking import ResilientLogger, fail_fast, numeric_leaves, optional_stage_run

    fail_fast()
    logger = ResilientLogger()
    with optional_stage_run(project_root(), stage, experiment) as run:
        if run is None:
            return
        logger.log_params({f"{stage}.{k}": v for k, v in flatten(params).items()})
        logger.log_metrics(numeric_leaves(metrics))
        for artifact in artifacts:
            logger.log_artifact(artifact, "report")
    if logger.failures:
        logging.getLogger(stage).warning("MLflow: %s", logger.summary())
