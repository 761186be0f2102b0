"""Stage 2, synthesize: BayLing instruction data from the corpus (filters, split, conversations, mix, card)."""
