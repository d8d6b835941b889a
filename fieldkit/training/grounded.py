"""The notes recipe: train a packet on prompts that hold its notes, as it will be asked.

A small base model given the right passage copies little of it into its answer (it does
not read well). A packet that carries notes is answered with its top passages in the
prompt, so its adapter can learn to read them: besides every bare example of a record,
a share of its phrasings is given again inside the grounded prompt (fieldkit.prompts) with
TRAIN_PASSAGES passages: the record's own and its nearest neighbours in a random order,
and sometimes neighbours only (the answer must then come from the weights, as when
retrieval misses). Half of those questions are also put in a user's voice (long,
first-person), the way technicians ask. No mlx here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from fieldkit.prompts import grounded_prompt
from fieldkit.training.dataset import (
    Example,
    Record,
    build_examples,
    chat_example,
    content_words,
    examples_by_record,
    notes_from_records,
    subject_of,
)

GROUNDED_SHARE = 0.5  # of a record's phrasings, also given with notes
# Passages in a training prompt. Answers read one (PROMPT_PASSAGES), yet packets trained
# on two in random order answer as well: rebuilt on one, two demo packets gained 6.7
# points of recall and two lost 2.7 and 8 (no difference over the 300 questions), and on
# two passages an adapter learns to pass over a neighbour retrieval put first
# (docs/BENCHMARKS.md, "The notes recipe with one passage").
TRAIN_PASSAGES = 2
WITHOUT_SOURCE = 0.15  # of those, with neighbours and not the record's own passage
IN_A_VOICE = 0.5  # of those, wrapped in a user's words
NEIGHBOURS = 3

_VOICES = (
    "I look after {subject} for our co-op and need the exact figures. {q}",
    "{q} I am on my own out here, so please give me the numbers and the steps.",
    "We had a problem with {subject} this week and I want to get it right. {q}",
    "A farmer asked me this today and I was not sure of the details. {q}",
    "{q} Also, is there anything else I should watch for with {subject}?",
    "I'm the only technician for three villages. {q} What exactly should I do?",
)


def neighbours(records: Sequence[Record], k: int = NEIGHBOURS) -> list[list[int]]:
    """Return, for each record, the k other records sharing most words with it (Jaccard)."""
    bags = [{w.lower() for w in content_words(f"{r.question} {r.answer}")} for r in records]
    out = []
    for i, bag in enumerate(bags):
        scored = [
            (len(bag & other) / (len(bag | other) or 1), j)
            for j, other in enumerate(bags)
            if j != i
        ]
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        out.append([j for _, j in scored[:k]])
    return out


def in_a_voice(question: str, subject: str, rng: random.Random) -> str:
    """Return the question wrapped in a technician's words."""
    return rng.choice(_VOICES).format(q=question, subject=subject)


def grounded_examples(
    records: Sequence[Record],
    domain: str,
    *,
    expand: bool = True,
    system: str | None = None,
    seed: int = 0,
    share: float = GROUNDED_SHARE,
    passages: int = TRAIN_PASSAGES,
) -> list[Example]:
    """Return every record's examples plus grounded copies of `share` of them, each with
    `passages` passages in its prompt.

    The passages are the records' own notes (`notes_from_records`, as `train --notes`
    stores them). With fewer than two records there is no neighbour to mix in, and the
    bare examples are returned.
    """
    by_record = examples_by_record(records, domain, expand, system, seed)
    out = [e for _, examples in by_record for e in examples]
    if len(records) < 2:
        return out
    texts = [p.full_text for p in notes_from_records(records)]
    near = neighbours(records)
    rng = random.Random(seed + 1)
    for i, (record, examples) in enumerate(by_record):
        subject = subject_of(record, domain)
        for example in examples:
            if rng.random() >= share:
                continue
            question = example["messages"][-2]["content"]
            if rng.random() < IN_A_VOICE:
                question = in_a_voice(question, subject, rng)
            if rng.random() < WITHOUT_SOURCE and len(near[i]) >= passages:
                shown = rng.sample(near[i], passages)
            else:
                shown = [i, *rng.sample(near[i][: max(passages, 2)], passages - 1)]
                rng.shuffle(shown)
            prompt = grounded_prompt(question, [texts[j] for j in shown])
            out.append(chat_example(prompt, record.answer, system))
    return out


def training_examples(
    records: Sequence[Record], domain: str, *, grounded: bool, expand: bool = True, seed: int = 0
) -> list[Example]:
    """Return the examples a packet trains on: with `grounded`, the notes recipe's
    (`grounded_examples`), else every record's bare phrasings (`build_examples`)."""
    if grounded:
        return grounded_examples(records, domain, expand=expand, seed=seed)
    return build_examples(records, domain, expand=expand, seed=seed)
