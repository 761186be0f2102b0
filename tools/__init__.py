"""Command-line tools that are neither stages nor flows: approvals, the smoke run, scoring, maintenance."""
