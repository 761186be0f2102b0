"""Prefect flows: retrain (the scheduled pipeline run) and serve (the same flow served from one process)."""

import bayling  # noqa: F401  (sets the pipeline's offline environment before Prefect reads its settings)
