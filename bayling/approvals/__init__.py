"""Human approval of registered candidates, after the pipeline: who may decide (the MLflow server's permissions),
the decision applied to the champion alias under a lock, the approvers' append-only ledgers and the trail read
back from them, what a paused retrain run shows a reviewer and how it checks an answer. May import core, config,
models and the stage packages (register's gate verdict and signed-in user); nothing in bayling imports it,
only flows and tools."""
