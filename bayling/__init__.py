"""The BayLing pipeline library: one subpackage per stage, with `core` and `config` beneath them all."""

import os

# Prefect's ephemeral server would otherwise report usage to Prefect Cloud; this pipeline runs offline.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
