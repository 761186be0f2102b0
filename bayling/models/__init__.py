"""The model as an artifact that both evaluate and register use: local generation (batched, deterministic,
with output cleaning) and the registry's champion lookup (which version holds an alias, its stored predictions
and its model files). Imports only bayling.core and bayling.config, so that neither stage imports the other
to reach it."""
