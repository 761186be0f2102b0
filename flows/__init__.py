"""Prefect flows that chain the DVC stages (retrain) and the smoke run used by tests."""
