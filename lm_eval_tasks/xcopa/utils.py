"""lm-eval's own XCOPA prompt functions, re-exported for the local task YAMLs beside this file.

lm-eval resolves `!function utils.<name>` against the YAML's own folder, so the local copies need a utils.py here;
importing lm-eval's module (rather than copying it) keeps the prompt lm-eval's: a change in lm-eval changes these
tasks too, and the engine-equality test (tests/evaluate/test_understanding_lm_eval.py) notices."""

from lm_eval.tasks.xcopa.utils import (  # noqa: F401
    doc_to_choice,
    doc_to_text_et,
    doc_to_text_ht,
    doc_to_text_id,
    doc_to_text_it,
    doc_to_text_qu,
    doc_to_text_sw,
    doc_to_text_ta,
    doc_to_text_th,
    doc_to_text_tr,
    doc_to_text_vi,
    doc_to_text_zh,
)
