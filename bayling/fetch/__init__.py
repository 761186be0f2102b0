"""Stage 1, fetch: corpus sources read into the canonical multi-parallel corpus, quarantine, the corpus published or
refused, and the upstream versions a retrain compares. May import core, config, models and base_model."""
