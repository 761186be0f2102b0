"""params.yaml: the loader (read, validate, line map, flatten), overrides (profiles, -S), and one schema per section."""
