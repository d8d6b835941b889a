"""The grounded prompt: one format for answering and for training on notes.

An adapter trained on prompts that hold its notes learns to read them; it only helps if
the prompt it meets when answering has the same shape, so both build it here.
"""

from __future__ import annotations

from collections.abc import Sequence

GROUNDED_INSTRUCTION = "Answer the question using these notes."


def note_line(full_text: str) -> str:
    """Return one passage (title and text on two lines) as one bullet line."""
    return "- " + full_text.strip().replace("\n", ": ", 1).replace("\n", " ")


def grounded_prompt(question: str, passages: Sequence[str]) -> str:
    """Return the user turn for a question and its passages (no passages: the bare question)."""
    if not passages:
        return question
    notes = "\n".join(note_line(text) for text in passages)
    return f"{GROUNDED_INSTRUCTION}\n{notes}\n\nQuestion: {question}"
