"""Stage 6, register: the promotion gate, the version logged and registered with its lineage tags and model card,
the gate verdict its register runs vouch for, the MLflow user who registered it, and the run summary. May import
core, config, models and the earlier stages; never approvals or reproduce, which build on it."""
