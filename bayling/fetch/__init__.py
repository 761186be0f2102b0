"""Stage 1, fetch: reading corpus sources into the canonical multi-parallel corpus."""
