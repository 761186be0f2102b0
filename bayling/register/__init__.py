"""Stage 6, register: the MLflow registry, the promotion gate, approvals and the run summary."""
