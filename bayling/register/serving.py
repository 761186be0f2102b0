"""The registered model's MLflow pyfunc flavour: a translator over the fine-tuned HF directory.

`mlflow models serve -m models:/NAME@champion` answers rows of {text, src_lang, tgt_lang}
with translations, rendered with the same prompt and chat template used in training.
The file is logged as MLflow "models from code", so no pickled object travels with the model.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
from mlflow.models import set_model

from bayling.models.champion import HF_ARTIFACT


class TranslationModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        import os

        from transformers import AutoModelForCausalLM, AutoTokenizer

        from bayling.core.progress import MODE_ENV

        os.environ.setdefault(MODE_ENV, "off")  # a progress bar per request would fill the server's log
        path = context.artifacts[HF_ARTIFACT]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path)

    def predict(self, context, model_input, params=None):  # untyped: MLflow reads type hints as a schema
        from bayling.core.prompts import translation_prompt
        from bayling.models.generation import clean_output, generate

        params = params or {}
        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        conversations = [
            [{"role": "user", "content": translation_prompt(r["text"], r["tgt_lang"], params.get("instruction_language", "en"))}]
            for r in rows
        ]
        raw = generate(
            self.model,
            self.tokenizer,
            conversations,
            batch_size=int(params.get("batch_size", 8)),
            max_new_tokens=int(params.get("max_new_tokens", 128)),
            num_beams=int(params.get("num_beams", 1)),
            first_line_only=True,
        )
        return [clean_output(text) for text in raw]


def signature() -> Any:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("string", "src_lang"), ColSpec("string", "tgt_lang")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", "long", 128),
                ParamSpec("num_beams", "long", 1),
                ParamSpec("batch_size", "long", 8),
                ParamSpec("instruction_language", "string", "en"),
            ]
        ),
    )


# Logged as "models from code": MLflow runs this file at load time and serves the object set here.
set_model(TranslationModel())
