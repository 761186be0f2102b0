"""Pipeline stages: thin entry points (`python -m stages.<name>`) that do I/O and call the bayling library."""
