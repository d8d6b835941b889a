"""The quality harness with notes: packets that carry passages, answers grounded in them.

Used by `fieldkit bench quality --with-notes` and `--notes-only` over a QualityRun
(fieldkit/training/quality.py): the same library, answer cache and routing counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fieldkit.training.quality import QualityRun

NOTES_SYSTEMS = ("base+notes", "routed+notes", "oracle+notes")


def notes_packet(run: QualityRun, domain: str, exemplars: list[str], notes: list) -> None:
    """Put a packet for the domain into the run's library that carries notes and exemplars
    but a zero adapter (it changes nothing): for scoring retrieval where no specialist was
    trained. Its answers are the base model's."""
    run.put_packet(
        domain,
        _zero_adapter(),
        description=f"{domain.replace('_', ' ')} notes",
        exemplars=exemplars,
        notes=notes,
    )


def notes_answers(
    run: QualityRun, name: str, questions: list, systems: tuple[str, ...] = NOTES_SYSTEMS
) -> list:
    """Answer every question with its packet's notes in the prompt; return the Answers.

    "base+notes": the routed packet's passages, the base model (retrieval only);
    "routed+notes": the same passages with the routed packet's adapter; "oracle+notes":
    the question's own packet, its passages and adapter; "<merge>+notes" (a merge the run
    built): the routed packet's passages with the merged adapter (for a favouring merge,
    the one favouring the routed packet; the base model when the router abstains). Where
    the notes do not cover a question the answer starts with the gap sentence and cites
    nothing; where the notes settle it (`Grounding.said`: the nearest record as written, a
    code they do not list) that text is the answer, as `ask` gives it, and nothing is
    generated; a part whose opening writes out another record is its own record as
    written, as `ask` streams it (`generating.as_streamed`). Routing accuracy goes to
    `run.routing[name]` when no other method set it.
    """
    from fieldkit.answering import engine_reader, ground
    from fieldkit.answers import NOTES
    from fieldkit.generating import as_streamed, in_parts
    from fieldkit.router.retrieval import PassageIndex
    from fieldkit.router.router import Router
    from fieldkit.training.evaluate import Answer

    router = Router(run.library, base_fingerprint=run.fingerprint)
    index = PassageIndex(run.library, router.embedder)
    reader = _memo(engine_reader(run.svc.engine))  # as `ask` reads (ranking.READ_K)
    by_id = {r.packet_id: d for d, r in run.records.items()}
    plans = []  # (system, question, adapter system, grounding)
    routes: dict[str, str | None] = {}
    for q in questions:
        routed = routes[q.question] = by_id.get(router.route(q.question).packet_id or "")
        for system in systems:
            domain = q.domain if system.startswith("oracle") else routed
            record = run.records.get(domain) if domain else None
            if system == "base":  # the bare base model, for comparison
                record = None
            grounding = ground(q.question, record, index, reader=reader)
            adapter = _adapter(run, system, domain)
            plans.append((system, q, adapter, grounding))
    hits = sum(routes[q.question] == q.domain for q in questions)
    run.routing.setdefault(name, {"correct": hits, "questions": len(questions), "routes": routes})
    written = [(a, g) for _, _, a, g in plans if g.writes]  # the rest: nothing to write
    prompt = {id(g): g.messages[-1]["content"] for _, g in written}
    also = {id(g): [m[-1]["content"] for m in g.also] for _, g in written}
    run.prefetch(
        [(adapter, prompt[id(g)]) for adapter, g in written]
        + [(adapter, more) for adapter, g in written for more in also[id(g)]]
    )
    answers = []
    for system, q, adapter, g in plans:
        if not g.writes:
            text, seconds = g.said or "", 0.0
        else:
            key = run.answer_key(adapter, prompt[id(g)])
            text, seconds = run.answer(key), run.seconds.get(key)
        if also.get(id(g)):  # in parts, as fieldkit.generating.stream answers them
            more = [run.answer_key(adapter, content) for content in also[id(g)]]
            text = in_parts(text, *(run.answer(part) for part in more))
            seconds = (seconds or 0.0) + sum(run.seconds.get(part) or 0.0 for part in more)
        if g.writes:
            text = as_streamed(g, text)[0]
        text = g.with_notice(text)
        cited = g.sources if g.grounding == NOTES else []
        answers.append(
            Answer(
                system,
                q,
                text,
                cited=None if system == "base" else tuple(s.full_text for s in cited),
                cited_titles=tuple(s.title or "" for s in cited),
                seconds=seconds,
            )
        )
    return answers


def _adapter(run: QualityRun, system: str, domain: str | None) -> str:
    """Return the adapter that answers a notes system's question routed to `domain`."""
    merge = system.removesuffix("+notes")
    if merge in run.merge_systems:
        return run.routed_merge(merge, domain)
    if system != "base+notes" and domain and f"spec:{domain}" in run.adapters:
        return f"spec:{domain}"
    return "base"


def _zero_adapter() -> Any:
    """Return a rank-1 LoRA adapter of zeros on one projection: a packet that adds no
    knowledge to the model, only its exemplars and notes."""
    import numpy as np

    from fieldkit.store.adapter import Adapter, AdapterConfig

    config = AdapterConfig(rank=1, scale=1.0, dropout=0.0, num_layers=1, keys=("self_attn.q_proj",))
    tensors = {
        "model.layers.0.self_attn.q_proj.lora_a": np.zeros((8, 1), np.float16),
        "model.layers.0.self_attn.q_proj.lora_b": np.zeros((1, 8), np.float16),
    }
    return Adapter(config=config, tensors=tensors)


def _memo(reader: Any) -> Any:
    """Return `reader` remembering its scores: systems on one packet read the same passages."""
    seen: dict[tuple[str, tuple[str, ...]], Any] = {}

    def read(question: str, texts: Any) -> Any:
        key = (question, tuple(texts))
        if key not in seen:
            seen[key] = reader(question, texts)
        return seen[key]

    return read
