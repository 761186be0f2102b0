"""Stage 2, synthesize: BayLing instruction data from the corpus (filters, decontamination, split, conversations, mix,
card, Dask shards). May import core, config, models and the earlier stages (base_model, fetch)."""
