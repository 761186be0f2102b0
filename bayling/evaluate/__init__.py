"""Stage 5, evaluate: test sets, generation, metrics, comparisons with the base model, the champion and reference
systems, the checks that every output belongs to its own item, the written report."""
