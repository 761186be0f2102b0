"""Stage 3, tokenize: chat templates, exact assistant masks, turn-boundary truncation and packing; and the
tokenizer audit, which the audit stage runs within the tokenize step. May import core, config, models and the earlier
stages."""
