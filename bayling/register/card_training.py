"""The model card's sections on what the model was trained on and how: the data card's sources, task families,
languages, filters and decontamination, the mix as synthesized, tokenized and drawn by the train steps (what
training saw), and the training settings. Plain inputs in, markdown out, like bayling/register/model_card.py."""

from __future__ import annotations

from typing import Any

from bayling.register.card_markdown import counts, language_label, number, table


def source_names(params: dict[str, Any]) -> list[str]:
    """The names of the corpus sources (fetch) and the general-chat sources (synthesize)."""
    names = [s.get("name") for s in (params.get("fetch") or {}).get("sources") or []]
    names += [s.get("name") for s in ((params.get("synthesize") or {}).get("general") or {}).get("sources") or []]
    return [n for n in names if n]


def training_data_section(data_card: dict[str, Any], params: dict[str, Any], trained_mix: dict[str, Any] | None = None) -> str:
    splits = data_card.get("splits") or {}
    train, heldout = splits.get("train") or {}, splits.get("heldout") or {}
    mix = data_card.get("mix") or {}
    filters = data_card.get("filters") or {}
    decontam = data_card.get("decontamination") or {}
    settings = data_card.get("params") or {}
    parts = ["## Training data", "",
             "Instructions synthesized from parallel text by the BayLing recipe (data card: `data/synth/card.md`).", ""]
    parts.append(f"- **Sources**: {', '.join(source_names(params)) or 'none recorded'}")
    parts.append(f"- **Conversations**: {train.get('conversations', '–')} for training "
                 f"({train.get('assistant_turns', '–')} assistant turns from {train.get('source_rows', '–')} source rows), "
                 f"{heldout.get('conversations', '–')} held out")
    parts.append(f"- **Task families**: {counts(train.get('per_family') or {})}")
    parts.append(f"- **Tasks**: {counts(train.get('per_task') or {})}")
    parts.append(f"- **Instruction languages**: {counts(train.get('per_instruction_language') or {})}")
    if mix:
        requested, achieved = mix.get("requested") or {}, mix.get("achieved") or {}
        shares = ", ".join(f"{cell} {number(100 * achieved[cell]) if cell in achieved else '–'}% "
                           f"(requested {number(100 * share)}%)" for cell, share in requested.items())
        unit = str(mix.get("unit", "conversations")).replace("_", " ")
        parts.append(f"- **Mix as synthesized, in {unit}** ({mix.get('mode', '–')}, temperature {mix.get('temperature', '–')}, "
                     f"at most {mix.get('max_repeat', '–')} copies): {shares or 'as the data came'}")
    filter_settings = settings.get("filters") or {}
    if filters or filter_settings:
        parts.append(f"- **Filters**: dedup {filter_settings.get('dedupe', '–')}, script share ≥ "
                     f"{filter_settings.get('min_script_share', '–')}, length ratio ≤ {filter_settings.get('max_length_ratio', '–')}, "
                     f"language ID {'on' if filter_settings.get('langid') else 'off'}; corpus rows "
                     f"{filters.get('rows_in', '–')} in, {filters.get('rows_kept', '–')} kept, "
                     f"{filters.get('rows_quarantined', '–')} quarantined")
    if decontam:
        removed = sum((decontam.get("corpus_rows_removed") or {}).values()) + sum((decontam.get("general_chats_removed") or {}).values())
        sets = counts(decontam.get("eval_set_segments") or {})
        parts.append(f"- **Decontamination**: {decontam.get('ngram', '–')}-gram overlap with {sets} segments; "
                     f"{removed} corpus rows or chats removed")
    per_language = train.get("per_language") or {}
    used = mix.get("languages") or {}
    if per_language:
        parts += ["", table(["Language", "Training conversations", "Rows available", "Rows used", "Repetition"],
                            [[language_label(code), n, (used.get(code) or {}).get("available", "–"),
                              (used.get(code) or {}).get("used", "–"), (used.get(code) or {}).get("repeat", "–")]
                             for code, n in sorted(per_language.items())])]
    if trained_mix:
        from bayling.register.training_mix import mix_tables, summary_line

        parts += ["", "### What training saw", "",
                  "Shares (%) of the training conversations and of their supervised tokens (the tokens the loss is computed "
                  "on): as synthesized (every conversation whole), as tokenized (what fits `tokenize.max_seq_len`, cut at "
                  f"turn boundaries), and in the rows the {trained_mix.get('steps') or '–'} train steps drew.", "",
                  f"{summary_line(trained_mix)}." + (f" **Off by more than {trained_mix['tolerance_points']} points: "
                                                    f"{'; '.join(trained_mix['misses'])}.**" if trained_mix["misses"] else ""),
                  "", *mix_tables(trained_mix)]
    return "\n".join(parts).rstrip("\n")


def training_settings_section(params: dict[str, Any], train_metrics: dict[str, Any], base_summary: str) -> str:
    train = params.get("train") or {}
    tokenize = params.get("tokenize") or {}
    steps = f"{train.get('epochs')} epochs" if train.get("epochs") else f"{train.get('max_steps', '–')} steps"
    rows = [
        ["Base model", base_summary],
        ["Method", train.get("method", "–") + (f" (LoRA r={train['lora'].get('r')}, merged)" if train.get("method") == "lora"
                                               and isinstance(train.get("lora"), dict) else "")],
        ["Schedule", f"{steps}, learning rate {train.get('learning_rate', '–')} ({train.get('lr_scheduler', '–')}, "
                     f"warm-up {train.get('warmup_ratio', '–')}), weight decay {train.get('weight_decay', '–')}, "
                     f"gradient clip {train.get('max_grad_norm', '–')}"],
        ["Batch", f"{train.get('per_device_batch_size', '–')} rows per device × {train.get('gradient_accumulation_steps', '–')} "
                  f"accumulation × {train.get('num_gpus', '–')} GPUs × {train.get('num_nodes', '–')} nodes"],
        ["Sequences", f"{tokenize.get('max_seq_len', '–')} tokens, template {tokenize.get('template', '–')}, loss on "
                      f"{tokenize.get('loss_on', '–')} assistant turns, packing {'on' if tokenize.get('packing') else 'off'}"],
        ["Precision", f"{train.get('precision', '–')}, DeepSpeed {train.get('deepspeed') or 'off'}, seed {train.get('seed', '–')}"],
    ]
    if train_metrics:
        rows.append(["Run", f"{train_metrics.get('steps', '–')} steps, final loss {number(train_metrics.get('final_loss'))}, "
                            f"{train_metrics.get('tokens_seen', '–')} tokens seen in {train_metrics.get('runtime_s', '–')} s "
                            f"on {train_metrics.get('world_size', '–')} process(es)"])
    return "\n".join(["## Training settings", "", table(["Setting", "Value"], rows)])
