"""The base_model prepare step: the base model as a plain Hugging Face directory (a dequantized GGUF, a Hub copy or a
tiny random Llama). May import core, config and models."""
