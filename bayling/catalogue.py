"""Names of the interactive-translation follow-up tasks (implemented in bayling.tasks).

Kept apart so params validation can check names without importing the task code and its templates.
"""

DATA_TASKS = (
    "pivot",
    "back_translate",
    "constrained",
    "length_limit",
    "correct_draft",
    "translate_list",
    "compare_candidates",
    "multi_target",
    "identify_language",
)
TEACHER_TASKS = ("change_register", "explain_word_choice", "shorten")
TASK_NAMES = DATA_TASKS + TEACHER_TASKS
