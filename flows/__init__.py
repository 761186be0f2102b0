"""Prefect flows: retrain (the scheduled pipeline run), reproduce (rebuild a registered version) and serve (retrain
served from one process), with `flows.runtime`, what they share while they run. The top layer: may import any of
`bayling`; nothing in `bayling` imports it. What two flows both need goes in `flows.runtime`, never one flow module
imported by another (serve imports retrain only to serve it)."""

import bayling  # noqa: F401  (sets the pipeline's offline environment before Prefect reads its settings)
