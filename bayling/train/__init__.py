"""Stage 4, train: supervised fine-tuning (full or LoRA), batches, checkpoints, throughput, the capacity plan and
multi-process launch. May import core, config, models and the earlier stages (tokenize's packing and templates)."""
