"""The official option readers: BLINK's last-paragraph rule and VLMEvalKit's can_infer (letter, then option text)."""

from __future__ import annotations

import pytest

from spatialtune.answers.parse import infer_option, last_paragraph_option, sole_option_letter, sole_option_text

YES_NO = {"A": "yes", "B": "no"}
SIDES = {"A": "left", "B": "right", "C": "behind"}


@pytest.mark.parametrize("reply", ["B", "(B)"])
def test_a_bare_letter_is_that_option(reply):
    assert last_paragraph_option(reply, 4) == "B"


def test_a_bare_letter_past_the_choices_is_still_read():  # analyze_answer accepts A-E whatever the choices
    assert last_paragraph_option("(E)", 2) == "E"


def test_the_last_paragraph_settles_several_options():
    assert last_paragraph_option("(A) looks plausible.\n\nSo the answer is (B)", 4) == "B"


def test_one_option_in_the_reply_wins_even_outside_the_last_paragraph():
    assert last_paragraph_option("(A) looks right.\n\nSo the answer is B.", 4) == "A"


def test_several_options_and_a_last_paragraph_with_two_are_left_to_the_matcher():
    assert last_paragraph_option("(C) no.\n\n(A) or (B) fit.", 4) is None


def test_only_whole_parenthesised_tokens_count():
    assert last_paragraph_option("The answer is (B).", 4) is None and last_paragraph_option("Answer: B", 4) is None


def test_options_past_the_choices_are_not_tokens():
    assert last_paragraph_option("(A) or maybe (C)", 2) == "A"


def test_a_letter_standing_alone_is_read_after_punctuation_becomes_spaces():
    assert sole_option_letter("The answer is (B).", SIDES) == "B" and sole_option_letter("**C**", SIDES) == "C"


def test_two_letters_or_lowercase_letters_are_no_letter():
    assert sole_option_letter("A or B", SIDES) is None and sole_option_letter("b", SIDES) is None


def test_the_article_a_counts_as_option_a():  # VLMEvalKit warns about it only with VERBOSE set
    assert sole_option_letter("A chair is on the left", SIDES) == "A"


def test_refusal_phrases_and_a_lone_z_are_z():
    assert sole_option_letter("Cannot determine the answer from this view", SIDES) == "Z"
    assert sole_option_letter("Z", SIDES) == "Z"


def test_a_reply_containing_one_options_text_is_that_option():
    assert sole_option_text("It is on the LEFT side", SIDES) == "A"


def test_a_reply_containing_two_options_texts_is_no_option():
    assert sole_option_text("left of the lamp, right of the door", SIDES) is None


def test_i_am_not_sure_matches_no_on_a_yes_no_question():
    assert infer_option("I am not sure", YES_NO) == "B"


def test_the_letter_rule_comes_before_the_text_rule():
    assert infer_option("C, not left", SIDES) == "C" and infer_option("on the right", SIDES) == "B"
    assert infer_option("Cannot determine the answer", YES_NO) == "Z"


def test_an_option_glued_to_punctuation_is_not_named():  # "(B)." is one token, not "(B)"
    assert last_paragraph_option("(C) no.\n\n(A) or (B).", 4) == "A"
