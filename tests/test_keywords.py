"""``-k EXPR``: selecting checks by name or hypothesis id."""

from __future__ import annotations

import pytest

from runbook.keywords import compile_keywords
from runbook.outcomes import UsageError

#: A check's names as the runner passes them: its id, then the ids of the hypotheses it tests.
CPU_CHECK = ["no_process_dominates", "runaway-process"]
STEAL_CHECK = ["steal_time_low", "cpu-steal"]
SYMPTOM = ["cpu_is_high"]


@pytest.mark.parametrize(
    ("expression", "names", "selected"),
    [
        ("dominates", CPU_CHECK, True),
        ("runaway", CPU_CHECK, True),
        ("steal", CPU_CHECK, False),
        ("steal", STEAL_CHECK, True),
        ("STEAL", STEAL_CHECK, True),
        ("Runaway-Process", CPU_CHECK, True),
        ("cpu", STEAL_CHECK, True),  # substring of the hypothesis id
        ("cpu", SYMPTOM, True),
        ("cpu and steal", STEAL_CHECK, True),
        ("cpu and steal", SYMPTOM, False),
        ("runaway or steal", CPU_CHECK, True),
        ("runaway or steal", STEAL_CHECK, True),
        ("runaway or steal", SYMPTOM, False),
        ("cpu and not steal", SYMPTOM, True),
        ("cpu and not steal", STEAL_CHECK, False),
        ("not steal", CPU_CHECK, True),
        ("not steal", STEAL_CHECK, False),
        ("not not steal", STEAL_CHECK, True),
        ("(runaway or steal) and not low", CPU_CHECK, True),
        ("(runaway or steal) and not low", STEAL_CHECK, False),
        ("runaway or (steal and low)", STEAL_CHECK, True),
        ("((steal))", STEAL_CHECK, True),
        ("no_process", CPU_CHECK, True),
        ("process-dominates", CPU_CHECK, False),  # words match as written, no normalising
        ("  steal  ", STEAL_CHECK, True),
    ],
)
def test_expression_selects(expression, names, selected):
    assert compile_keywords(expression)(names) is selected


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "and",
        "not",
        "cpu and",
        "or cpu",
        "cpu steal",  # two words need an operator
        "(cpu",
        "cpu)",
        "()",
        "cpu not steal",
        # Juxtaposed parentheses must not turn into a call evaluated at match time.
        "cpu (steal)",
        "(cpu)(steal)",
        "__import__('os')",
    ],
)
def test_bad_expression_is_a_usage_error(expression):
    with pytest.raises(UsageError, match="-k"):
        compile_keywords(expression)(CPU_CHECK)


def test_words_are_data_not_code():
    # Identifiers, keywords and dunder names are just words to look for.
    for word in ("__class__", "True", "None", "lambda", "import", "_w"):
        assert compile_keywords(word)([f"check{word}x"]) is True
        assert compile_keywords(word)(["other"]) is False


def test_operators_are_lowercase_words_only():
    # pytest treats `AND` as a word too: a check named *_AND_* stays selectable.
    match = compile_keywords("AND")
    assert match(["read_and_write"]) is True
    assert match(["other"]) is False
