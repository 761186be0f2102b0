from bayling.config.synthesize import INTERACTIVE_TASKS
from bayling.core.records import CorpusRow
from bayling.synthesize.interactive import interactive_conversation

ROW = CorpusRow("c:1", "c", {"eng_Latn": "Wash your hands.", "fra_Latn": "Lavez-vous les mains.", "swh_Latn": "Nawa mikono."})


def test_interactive_conversation_structure():
    row = CorpusRow("c:9", "c", dict(ROW.texts, zho_Hans="勤洗手。"))
    outcome = interactive_conversation(
        row, seed=1, index=0, instruction_languages={"en": 1.0}, task_weights={t: 1.0 for t in INTERACTIVE_TASKS},
        max_followups=3, neighbours=[row],
    )
    conv = outcome.conversation
    roles = [m["role"] for m in conv.messages]
    assert roles == ["user", "assistant"] * (len(roles) // 2)
    assert conv.turn_tasks[0] == "translate" and 2 <= len(conv.turn_tasks) <= 4
    assert conv.messages[1]["content"] == row.texts[conv.tgt_lang]
    assert all(reason for _, reason in outcome.skipped)
