"""Stage 4, train: supervised fine-tuning (full or LoRA), checkpoints, multi-process launch."""
