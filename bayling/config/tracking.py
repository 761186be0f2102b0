"""`tracking`: the MLflow experiment every stage logs to."""

from __future__ import annotations

from bayling.config.types import Section


class TrackingParams(Section):
    experiment: str = "bayling-pipeline"
