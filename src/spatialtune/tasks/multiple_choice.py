"""Multiple-choice questions: the option letters, the lettered prompt and the answer-format instruction."""

from __future__ import annotations

from typing import Sequence

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def letters(num_choices: int) -> list[str]:
    """The option letters A, B, … of `num_choices` choices."""
    return [chr(ord("A") + i) for i in range(num_choices)]


def choice_prompt(question: str, choices: Sequence[str], instruction: str = MC_INSTRUCTION) -> str:
    """Question, lettered options "(A) …" one per line, and the answer-format instruction."""
    options = "\n".join(f"({letter}) {choice}" for letter, choice in zip(letters(len(choices)), choices))
    return f"{question}\n{options}\n{instruction}"
