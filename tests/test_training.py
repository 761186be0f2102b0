import torch

from bayling.chat import IGNORE_INDEX, encode_conversations
from bayling.training import PaddingCollator


def test_collator_pads_right_with_ignored_labels():
    batch = PaddingCollator(pad_token_id=0)([
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]},
        {"input_ids": [8], "labels": [8]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_a_few_trainer_steps_lower_the_loss_on_the_tiny_model(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    from bayling.params import TrainParams
    from bayling.training import training_arguments

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    conversations = [
        [{"role": "user", "content": f"Provide the French translation for this sentence: number {i}"},
         {"role": "assistant", "content": "Lavez-vous les mains."}]
        for i in range(16)
    ]
    encoded = encode_conversations(tokenizer, conversations)
    dataset = Dataset.from_dict({"input_ids": [e.input_ids for e in encoded], "labels": [e.labels for e in encoded]})
    collator = PaddingCollator(tokenizer.pad_token_id)

    def loss_now() -> float:
        batch = collator([dataset[i] for i in range(len(dataset))])
        with torch.no_grad():
            return model(**batch).loss.item()

    before = loss_now()
    params = TrainParams(max_steps=6, per_device_batch_size=8, learning_rate=5e-3, warmup_ratio=0.0, logging_steps=1, save_steps=100)
    trainer = Trainer(model=model, args=training_arguments(params, tmp_path / "ckpt"), train_dataset=dataset, data_collator=collator)
    trainer.train()
    after = loss_now()
    assert after < before - 1.0
