"""3D scene question answering (ScanQA, SQA3D): the question prompt and its short-answer instruction."""

from __future__ import annotations

ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."


def scene_question_prompt(question: str, situation: str | None = None, instruction: str = ANSWER_INSTRUCTION) -> str:
    """The question (after "Situation: …" for SQA3D), then the instruction, one per line; empty parts left out."""
    parts = ([f"Situation: {situation}", f"Question: {question}"] if situation else [question]) + [instruction]
    return "\n".join(p for p in parts if p)
