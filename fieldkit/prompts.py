"""The grounded prompt: one format for answering and for training on notes; and the
checks on a question before any model is loaded.

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
    the question (fieldkit.router.ranking.READ_K): the record, then the question's cue,
    worded as when READ_WEIGHT was chosen (a farm technician, whatever the domain)."""
    return f"Record:\n{full_text.strip()}\n\nA farm technician asks about this record:"


# The longest prompt fieldkit takes, in characters: a question to `fieldkit ask`, or all the
# messages of a request to the agent (fieldkit.server.chat). At about 4 characters a token,
# a longer one overruns the model's positions, and only after minutes of work.
MAX_PROMPT_CHARS = 32_000


def prompt_too_long(chars: int, limit: int = MAX_PROMPT_CHARS) -> str | None:
    """Return the sentence refusing a prompt of `chars` characters over `limit`; None if
    it fits. The one rule for `fieldkit ask` and the agent."""
    if chars <= limit:
        return None
    return f"The prompt has {chars} characters; fieldkit takes at most {limit}."


def check_question(question: str) -> None:
    """Raise FieldkitError with one sentence if `question` is empty, holds no letter or
    digit (a stray key: "^", "?"), or is too long; cheap, so a caller checks before it
    loads any model."""
    from fieldkit.errors import FieldkitError

    if not question.strip():
        raise FieldkitError("The question is empty.")
    if not any(c.isalnum() for c in question):
        raise FieldkitError("The question has no words in it.")
    if refusal := prompt_too_long(len(question)):
        raise FieldkitError(refusal)
