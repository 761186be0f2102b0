"""Stage 3, tokenize: chat templates, exact assistant masks, turn-boundary truncation and packing."""
