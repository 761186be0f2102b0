"""Stage 5, evaluate: test sets, generation, metrics, comparisons with champion and reference systems, report."""
