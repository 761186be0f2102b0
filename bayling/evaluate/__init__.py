"""Stage 5, evaluate: test sets, engines, the generation cache, metrics, comparisons with the base model, the champion
and reference systems, the checks that every output belongs to its own item, the review and the written report. May
import core, config, models (local generation, the champion lookup) and the earlier stages; never register."""
