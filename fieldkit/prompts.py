"""The grounded prompt: one format for answering and for training on notes.

An adapter trained on prompts that hold its notes learns to read them; it only helps if
the prompt it meets when answering has the same shape, so both build it here.
"""

from __future__ import annotations

from collections.abc import Sequence

GROUNDED_INSTRUCTION = "Answer the question using these notes."
# How many of the passages found go into the prompt, when answering and in the notes
# recipe's training prompts alike. The rest are shown beside the answer ("near, not read") for
# the reader to check, not given to the model: a 135M model given two passages often
# copies the second, a neighbour, for a long question; given the first alone it answers
# from it (docs/BENCHMARKS.md, "One passage in the prompt").
PROMPT_PASSAGES = 1


def note_line(full_text: str) -> str:
    """Return one passage (title and text on two lines) as one bullet line."""
    return "- " + full_text.strip().replace("\n", ": ", 1).replace("\n", " ")


def grounded_prompt(question: str, passages: Sequence[str]) -> str:
    """Return the user turn for a question and its passages (no passages: the bare question)."""
    if not passages:
        return question
    notes = "\n".join(note_line(text) for text in passages)
    return f"{GROUNDED_INSTRUCTION}\n{notes}\n\nQuestion: {question}"


def reading_prefix(full_text: str) -> str:
    """Return the text a passage is read in before a question, to score how well it explains
    the question (fieldkit.router.retrieval.READ_K): the record, then the question's cue,
    worded as when READ_WEIGHT was chosen (a farm technician, whatever the domain)."""
    return f"Record:\n{full_text.strip()}\n\nA farm technician asks about this record:"
