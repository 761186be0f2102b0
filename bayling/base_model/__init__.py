"""Materialising the base model as a plain Hugging Face directory (the base_model prepare step)."""
