"""Training data: parse chat- and instruction-format jsonl, and expand records into phrasings.

A small model trained on one question per fact learns the question string, not the fact:
asked in other words it answers with a neighbouring record. `expand_record` therefore
turns each record into several examples that all end in the same answer: the original
question, hand-written paraphrases, reworded templates, "tell me about <name>" questions
built from the record's names, and one question per answer sentence built from that
sentence's own words. No mlx here.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldkit.errors import FieldkitError, PacketError
from fieldkit.store.exemplars import MAX_EXEMPLARS, first_that_fit, spread
from fieldkit.store.files import jsonl_values, read_text_bounded


class DataError(FieldkitError):
    """A training or question file is missing, unreadable, or not in a known format."""


@dataclass(frozen=True)
class Record:
    """One fact to teach: a question and its answer, with optional extra phrasings."""

    question: str
    answer: str
    paraphrases: tuple[str, ...] = field(default=())


Example = dict[str, Any]  # {"messages": [{"role": ..., "content": ...}, ...]}

_STOPWORD_TEXT = """a an the and or of to in on at by for with from into onto over under is are was were
    be been being it its this that these those which who whom what when where why how than
    then there their they them he she his her our your you we i as not no only all any each
    every both more most less least very can could should would will may might must do does
    did done has have had such same other also just so if but because while after before
    during within without between about above below up down out off again further once here
    per via each one two three four five six seven eight nine ten"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_NAME = re.compile(r"\b([A-Z][\w'-]*(?:\s+(?:[A-Z][\w'-]*|of|de|la))*\s+[A-Z][\w'-]*)\b")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_WORD = re.compile(
    r"\d[\d.,:]*\s?(?:%|[AaPp][Mm]\b|(?:cm|mm|km|kg|mg|ml|ppm|days?|hours?|weeks?)\b)?"
    r"|[A-Za-z][\w'%-]*"
)

_REWORDINGS = (
    "{q}",
    "Quick question: {q}",
    "Can you explain this? {q}",
    "I'm in the field and need to know: {q}",
    "{q} Please give the specifics.",
)
_NAME_QUESTIONS = (
    "What do you know about {name}?",
    "Tell me about {name}.",
    "What should a technician know about {name}?",
    "Explain {name} to me.",
)
_STATEMENT_QUESTIONS = (
    "What about {name} and {a}?",
    "How is {a} related to {name}?",
    "{name}: what is the story with {a} and {b}?",
    "Tell me about {a} and {b} in the case of {name}.",
    "What role does {a} play for {name}?",
)


def _message_text(message: Any, index: int, path: Path, line_no: int) -> tuple[str, str]:
    if not isinstance(message, Mapping):
        raise DataError(f"{path.name} line {line_no}: message {index} is not an object.")
    role, content = message.get("role"), message.get("content")
    if role not in {"system", "user", "assistant"} or not isinstance(content, str):
        raise DataError(
            f"{path.name} line {line_no}: message {index} needs a role "
            "(system, user or assistant) and text content."
        )
    return role, content


def parse_line(obj: Any, path: Path, line_no: int) -> Record:
    """Return the Record of one parsed jsonl object; raise DataError if it fits no format.

    Chat format: `{"messages": [...]}` with a user message followed by an assistant one
    (the last pair is taken). Instruction format: `{"instruction", "input", "output"}`
    (the input, if any, follows the instruction). An optional `"paraphrases"` list of
    questions is kept in either format.
    """
    if not isinstance(obj, Mapping):
        raise DataError(f"{path.name} line {line_no} is not a JSON object.")
    paraphrases = obj.get("paraphrases", [])
    if not isinstance(paraphrases, list) or not all(isinstance(p, str) for p in paraphrases):
        raise DataError(f"{path.name} line {line_no}: paraphrases must be a list of strings.")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list):
            raise DataError(f"{path.name} line {line_no}: messages must be a list.")
        pairs = [_message_text(m, i, path, line_no) for i, m in enumerate(messages)]
        answer_at = max((i for i, (r, _) in enumerate(pairs) if r == "assistant"), default=-1)
        question_at = max(
            (i for i, (r, _) in enumerate(pairs[: max(answer_at, 0)]) if r == "user"), default=-1
        )
        if answer_at < 0 or question_at < 0:
            raise DataError(
                f"{path.name} line {line_no}: a chat record needs a user message "
                "followed by an assistant message."
            )
        question, answer = pairs[question_at][1], pairs[answer_at][1]
    elif "instruction" in obj and "output" in obj:
        instruction, extra, answer = obj["instruction"], obj.get("input") or "", obj["output"]
        if not all(isinstance(v, str) for v in (instruction, extra, answer)):
            raise DataError(f"{path.name} line {line_no}: instruction, input, output must be text.")
        question = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    else:
        raise DataError(
            f'{path.name} line {line_no} is neither chat format ({{"messages": [...]}}) '
            'nor instruction format ({"instruction", "input", "output"}).'
        )
    if not question.strip() or not answer.strip():
        raise DataError(f"{path.name} line {line_no} has an empty question or answer.")
    return Record(question.strip(), answer.strip(), tuple(p.strip() for p in paraphrases))


def read_jsonl(path: Path) -> list[Any]:
    """Return the parsed values of a jsonl file (blank lines skipped); raise DataError."""
    path = Path(path)
    try:
        return [value for _, value in jsonl_values(read_text_bounded(path), path.name)]
    except PacketError as exc:
        raise DataError(str(exc)) from exc


def load_records(path: Path) -> list[Record]:
    """Return the records of a chat- or instruction-format jsonl file; raise DataError."""
    path = Path(path)
    records = [parse_line(obj, path, n) for n, obj in enumerate(read_jsonl(path), start=1)]
    if not records:
        raise DataError(f"{path.name} holds no training records.")
    return records


def attach_paraphrases(
    records: Sequence[Record], rows: Iterable[Mapping[str, Any]]
) -> list[Record]:
    """Return records with extra questions from rows keyed by the original question.

    A row is `{"source": original, "questions": [...]}` (also accepted: "question" or
    "instruction" for the original, "paraphrases" or "paraphrase" for the new phrasings);
    rows for questions not among the records are ignored.
    """
    extra: dict[str, list[str]] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        original = row.get("source") or row.get("question") or row.get("instruction")
        if not isinstance(original, str):
            continue
        found = row.get("questions") or row.get("paraphrases") or [row.get("paraphrase")]
        if isinstance(found, list):
            extra.setdefault(original.strip(), []).extend(p for p in found if isinstance(p, str))
    return [
        Record(r.question, r.answer, r.paraphrases + tuple(extra.get(r.question, ())))
        for r in records
    ]


def note_records(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Return records as a notes file holds them (`store.notes.passages_from_records`
    reads them): question, answer and paraphrases, so each passage keeps its phrasings."""
    return [
        {"question": r.question, "answer": r.answer, "paraphrases": list(r.paraphrases)}
        for r in records
    ]


def notes_from_records(records: Sequence[Record]) -> list[Any]:
    """Return the note passages `train --notes` keeps for these records, each with the
    record's paraphrases as other phrasings of its question (`Passage.asked`)."""
    from fieldkit.store.notes import passages_from_records

    return passages_from_records(note_records(records))


def chat_example(question: str, answer: str, system: str | None = None) -> Example:
    """Return one chat-format training example."""
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def names_in(text: str) -> list[str]:
    """Return multi-word capitalised names in text (e.g. "Silver-Back Locust"), in order."""
    seen: list[str] = []
    for match in _NAME.finditer(text):
        words = match.group(1).split()
        while words and words[0].lower() in _STOPWORDS | {"what", "how"}:
            words = words[1:]
        name = " ".join(words)
        if len(words) >= 2 and name not in seen:
            seen.append(name)
    return seen


def content_words(sentence: str, exclude: str = "") -> list[str]:
    """Return a sentence's distinctive words, longest first, then its numbers with units.

    A person asks about the things a statement names, rarely with its numbers, so words
    come first.
    """
    banned = {w.lower() for w in _WORD.findall(exclude)}
    words = [w.strip(".,;: ") for w in _WORD.findall(sentence)]
    words = [w for w in words if w and w.lower() not in _STOPWORDS and w.lower() not in banned]
    numbers = [w for w in words if any(c.isdigit() for c in w)]
    others = sorted((w for w in words if w not in numbers), key=len, reverse=True)
    out: list[str] = []
    for w in others + numbers:
        if w.lower() not in {o.lower() for o in out}:
            out.append(w)
    return out


def sentences(text: str) -> list[str]:
    """Split an answer into sentences."""
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def subject_of(record: Record, domain: str) -> str:
    """Return the name a record is about (its first name), or a phrase from its question."""
    names = names_in(record.question) or names_in(record.answer)
    if names:
        return names[0]
    words = content_words(record.question)
    return " ".join(words[:2]) if words else domain


def record_names(record: Record) -> list[str]:
    """Return the names of a record, dropping one that only extends another ("Early X")."""
    names = names_in(record.question) + names_in(record.answer)
    kept: list[str] = []
    for name in names:
        if name not in kept and not any(k in name for k in kept):
            kept.append(name)
    return kept


def expand_record(
    record: Record,
    domain: str,
    rng: random.Random,
    *,
    shared_names: frozenset[str] = frozenset(),
    system: str | None = None,
    max_templates: int = 2,
) -> list[Example]:
    """Return several training examples of one record, all answered with its full answer.

    Phrasings: the original question; every paraphrase; `max_templates` reworded forms
    of the question; two "tell me about <name>" questions per name that no other record
    uses (a shared name would teach two answers to one question); and one question per
    answer sentence built from the record's subject and the sentence's distinctive words.
    """
    answer = record.answer
    questions = [record.question, *record.paraphrases]
    templates = rng.sample(_REWORDINGS[1:], k=min(max_templates, len(_REWORDINGS) - 1))
    questions += [t.format(q=record.question) for t in templates]
    subject = subject_of(record, domain)
    for name in [n for n in record_names(record) if n not in shared_names][:2]:
        questions += [t.format(name=name) for t in rng.sample(_NAME_QUESTIONS, k=2)]
    for sentence in sentences(answer):
        words = content_words(sentence, exclude=subject)
        if len(words) < 2:
            continue
        template = rng.choice(_STATEMENT_QUESTIONS)
        questions.append(template.format(name=subject, a=words[0], b=words[1]))
    unique = list(dict.fromkeys(q for q in questions if q.strip()))
    return [chat_example(q, answer, system) for q in unique]


def build_examples(
    records: Sequence[Record],
    domain: str,
    *,
    expand: bool = True,
    system: str | None = None,
    seed: int = 0,
) -> list[Example]:
    """Return the training examples of all records (expanded unless expand=False)."""
    return [
        e
        for _, examples in examples_by_record(records, domain, expand, system, seed)
        for e in examples
    ]


def examples_by_record(
    records: Sequence[Record],
    domain: str,
    expand: bool = True,
    system: str | None = None,
    seed: int = 0,
) -> list[tuple[Record, list[Example]]]:
    """Return each record with its training examples (its phrasings, or itself alone)."""
    rng = random.Random(seed)
    if not expand:
        return [(r, [chat_example(r.question, r.answer, system)]) for r in records]
    counts: dict[str, int] = {}
    for record in records:
        for name in set(record_names(record)):
            counts[name] = counts.get(name, 0) + 1
    shared = frozenset(n for n, c in counts.items() if c > 1)
    return [
        (record, expand_record(record, domain, rng, shared_names=shared, system=system))
        for record in records
    ]


def domain_system_prompt(domain: str) -> str:
    """Return the system prompt that names a packet's domain."""
    return f"You are a field expert in {domain.replace('_', ' ')}. Answer with the specific facts."


def pick_exemplars(records: Sequence[Record], k: int = MAX_EXEMPLARS) -> list[str]:
    """Return up to k router exemplars: every training question, then their phrasings
    (each record's first, then each record's second, ...), within MAX_EXEMPLAR_CHARS.
    More than k training questions give k of them spread evenly over the records.

    The phrasings matter: a packet routed by its training questions alone abstains on
    short questions in users' words (docs/BENCHMARKS.md, "Router")."""
    questions = spread(list(dict.fromkeys(r.question for r in records)), k)
    depth = max((len(r.paraphrases) for r in records), default=0)
    phrasings = [r.paraphrases[i] for i in range(depth) for r in records if i < len(r.paraphrases)]
    return first_that_fit(questions + phrasings, k)


def exemplars_from(
    records: Sequence[Record],
    examples: Sequence[Example],
    minimum: int = 10,
    k: int = MAX_EXEMPLARS,
) -> list[str]:
    """Return router exemplars (`pick_exemplars`), topped up with other phrasings if few."""
    picked = pick_exemplars(records, k)
    if len(picked) >= minimum:
        return picked
    asked = [e["messages"][-2]["content"] for e in examples]
    return list(dict.fromkeys(picked + asked))[:minimum]
