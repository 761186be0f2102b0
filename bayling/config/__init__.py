"""params.yaml: the loader (read, validate, line map, flatten), overrides (profiles, -S), the YAML text writer, and
one schema per section. May import bayling.core only."""
