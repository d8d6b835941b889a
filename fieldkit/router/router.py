"""The semantic router: pick the knowledge packet whose exemplar questions fit a question.

Each packet's exemplars are embedded once (cached in the library database, keyed by
packet id and embedder id); a packet that carries notes is also scored against its note
passages (the same vectors retrieval uses, table `passage_embeddings`), which is what lets
long, natural questions reach it: they resemble a record's answer more than its short
question, and such a packet also scores the rare words the question shares with its texts
(fieldkit.router.words). At query time one matrix product scores the question against
every exemplar and passage of every eligible packet; numpy then reduces per packet, with
no Python loop over packets. Abstention is calibrated in two tiers (see `_decide`).
Packets made for another base model are never candidates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from functools import cached_property

import numpy as np

from fieldkit.formats import as_clause
from fieldkit.router.decision import (
    Candidate,
    LibraryLike,
    PacketLike,
    RouteDecision,
    exemplar_texts,
)
from fieldkit.router.embedder import Embedder, default_embedder
from fieldkit.router.everyday import (
    EVERYDAY_LEAD,
    EVERYDAY_NEAR_LEAD,
    Divide,
    Everyday,
    cache_key,
    everyday_questions,
)
from fieldkit.router.grid import ExemplarGrid
from fieldkit.router.shorthand import written_out
from fieldkit.store.usable import usable_packets, usable_problem
from fieldkit.store.vectors import VectorCache

# Chosen and calibrated in bench/bench_route.py (docs/BENCHMARKS.md, "Router"). The nearest
# exemplar (or passage) routes best. Two tiers: a packet scoring at least its high tier is
# routed to; one scoring at least its rescue score only when it leads the best packet of
# another domain by its rescue margin (a clear winner among weak scores, which is what a
# long question in the users' own words looks like). A high score needs no lead, and
# packets of one domain never hold each other back, so two authors' pump packets still
# route. A packet without notes has the tiers below, picked on the older held-out sets
# (assets/demo/*/heldout.jsonl, bench/data/reference_heldout.jsonl,
# bench/data/out_of_domain.txt).
DEFAULT_METHOD = "topk"
DEFAULT_TOP_K = 1
DEFAULT_BLEND = 0.25  # for method "blend": weight of the centroid score
DEFAULT_MIN_SCORE = 0.52
DEFAULT_RESCUE_SCORE = 0.45
DEFAULT_RESCUE_MARGIN = 0.04
# A packet that carries notes is scored against its note passages too, plus NOTES_LEXICAL
# times the share of the question's words (weighted by rarity among the library's noted
# packets) that its best passage or exemplar holds; its own tiers below were picked on
# every set written before bench/data/out_of_domain_site.txt and assets/demo/*/site.jsonl,
# which were written afterwards, blind, and scored once.
NOTES_LEXICAL = 0.3
NOTES_MIN_SCORE = 0.60
NOTES_RESCUE_SCORE = 0.51
NOTES_RESCUE_MARGIN = 0.02
# Below both tiers, the best packet is still routed to when it scores LEANING's first value
# or more, leads the best packet of another domain by its second, and the question lies on
# the library's side of its divide (everyday.Divide) by its third, where +1 is the mean of
# the library's texts: a short question typed in a hurry ("penta vials froze, how to prove
# it") scores low against every text yet reads like the library's, not like the everyday
# questions. Picked on every set written before assets/demo/*/hurried.jsonl and
# bench/data/out_of_domain_night.txt, which were written blind and scored once.
LEANING = (0.40, 0.06, 0.25)
DEFAULT_MIN_MARGIN = 0.0  # a margin required at every score (off: see above)
METHODS = ("centroid", "topk", "blend")
BATCH = 64  # questions embedded and scored together in route_many


def near_miss(decision: RouteDecision) -> Candidate | None:
    """Return the best packet of a decision that abstained, when it scored at least the
    lowest score a tier routes at (LEANING's first), else None: the packet a person may
    want to ask by hand (a word of two senses, "crib" or "coop", can mislead the router)."""
    if decision.route is not None or not decision.candidates:
        return None
    best = decision.candidates[0]
    return best if best.score >= LEANING[0] else None


class Router:
    """Routes questions to packets of one library, for one base model.

    `base_fingerprint` None means the base model is unknown: every packet is eligible.
    The embedder loads on first use; `warm()` loads it (and the index) ahead of time.
    """

    def __init__(
        self,
        library: LibraryLike,
        embedder: Embedder | None = None,
        base_fingerprint: str | None = None,
        *,
        method: str = DEFAULT_METHOD,
        top_k: int = DEFAULT_TOP_K,
        blend: float = DEFAULT_BLEND,
        min_score: float = DEFAULT_MIN_SCORE,
        min_margin: float = DEFAULT_MIN_MARGIN,
        rescue_score: float = DEFAULT_RESCUE_SCORE,
        rescue_margin: float = DEFAULT_RESCUE_MARGIN,
        notes_min_score: float = NOTES_MIN_SCORE,
        notes_rescue_score: float = NOTES_RESCUE_SCORE,
        notes_rescue_margin: float = NOTES_RESCUE_MARGIN,
        notes_lexical: float = NOTES_LEXICAL,
        use_notes: bool = True,
        everyday: Sequence[str] | None = None,
        everyday_lead: float = EVERYDAY_LEAD,
        everyday_near_lead: float = EVERYDAY_NEAR_LEAD,
        codes: bool = True,
        leaning: tuple[float, float, float] | None = LEANING,
        divide_min_texts: int | None = None,
        show: int = 3,
    ) -> None:
        """`everyday`: the questions no packet is for (fieldkit.router.everyday); None means
        the shipped list, () none. `everyday_near_lead` at or above `everyday_lead` turns
        the library's divide off, and so does a library of fewer texts than
        `divide_min_texts` (None: everyday.DIVIDE_MIN_TEXTS); `codes` False, the route by
        a code only one domain names (`_named`); `leaning` None, the tier by the
        divide (LEANING)."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {method!r}")
        self.library = library
        self.embedder = embedder or default_embedder()
        self.base_fingerprint = base_fingerprint
        self.method, self.top_k, self.blend = method, top_k, blend
        self.min_score, self.min_margin, self.show = min_score, min_margin, show
        self.rescue_score, self.rescue_margin = rescue_score, rescue_margin
        self.notes_tiers = (notes_min_score, notes_rescue_score, notes_rescue_margin)
        self.notes_lexical, self.use_notes = notes_lexical, use_notes
        self._everyday_texts = list(everyday_questions() if everyday is None else everyday)
        self._everyday_key = cache_key(self._everyday_texts)  # kept in the cache's pruning
        self.everyday_leads = (everyday_lead, everyday_near_lead)
        self.codes, self.divide_min_texts = codes, divide_min_texts
        self.leaning = leaning
        self._everyday: Everyday | None = None
        self._divide: Divide | None = None
        self._index: ExemplarGrid | None = None
        self._token: tuple[int, int] | None = None
        self._withheld: dict[str, str | None] = {}
        self.embedded_packets = 0  # how many packets this router had to embed (not cached)

    @cached_property
    def cache(self) -> VectorCache:
        return self.library.vectors("exemplar_embeddings")

    def eligible(self, record: PacketLike) -> bool:
        """True if the packet was made for this router's base model."""
        return self.base_fingerprint is None or record.base_fingerprint == self.base_fingerprint

    def index_packet(self, record: PacketLike) -> np.ndarray:
        """Embed a packet's exemplars unless cached; return its (count, dim) vectors.

        A packet for another base model is never routed to, so it is not embedded: the
        result is then empty.
        """
        if not self.eligible(record):
            return np.zeros((0, self.embedder.dim), np.float32)
        cached = self.cache.get_many([record.packet_id], self.embedder.id)
        if record.packet_id in cached:
            return cached[record.packet_id]
        vectors = self.embedder.embed(exemplar_texts(record))
        self.cache.put(record.packet_id, self.embedder.id, vectors)
        self.embedded_packets += 1
        self._index = None  # the next question rebuilds from the cache
        if self.use_notes:
            self.note_vectors(record)
        return vectors

    def note_vectors(self, record: PacketLike) -> np.ndarray:
        """Return the (count, dim) vectors of a packet's note passages, embedding them unless
        cached (empty for a packet without notes, or with `use_notes` off)."""
        return self._note_vectors(record, self.note_texts(record))

    def _note_vectors(self, record: PacketLike, texts: list[str]) -> np.ndarray:
        """The vectors of a packet's note texts (`note_texts`), embedded unless cached."""
        if not texts:
            return np.zeros((0, self.embedder.dim), np.float32)
        cache = self.library.vectors("passage_embeddings")
        cached = cache.get_many([record.packet_id], self.embedder.id).get(record.packet_id)
        if cached is None or len(cached) != len(texts):
            cached = self.embedder.embed(texts)
            cache.put(record.packet_id, self.embedder.id, cached)
        return cached

    def note_texts(self, record: PacketLike) -> list[str]:
        """Return the texts of a packet's note passages, title and text together ([] for a
        packet without notes, or with `use_notes` off)."""
        from fieldkit.store.notes import notes_of

        manifest = getattr(record, "manifest", None)
        passages = notes_of(manifest) if self.use_notes and manifest else []
        return [p.full_text for p in passages]

    def warm(self) -> Router:
        """Load the embedder, index the library and the everyday questions now rather than
        on the first question."""
        load = getattr(self.embedder, "load", None)
        if callable(load):
            load()
        self._ensure_index()
        self.everyday()
        return self

    def _library_token(self) -> tuple[int, int]:
        return self.library.change_token()

    def _ensure_index(self) -> ExemplarGrid:
        if self._index is not None and self._token == self._library_token():
            return self._index
        records = self.library.list_packets()
        packets = [r for r in records if self.eligible(r)]
        usable = {r.packet_id for r in usable_packets(self.library, self.base_fingerprint)}  # type: ignore[arg-type]
        self._withheld = {
            r.packet_id: usable_problem(self.library, r, self.base_fingerprint)  # type: ignore[arg-type]
            for r in packets
            if r.packet_id not in usable
        }
        cached = self.cache.get_many([p.packet_id for p in packets], self.embedder.id)
        vectors = [
            cached[p.packet_id] if p.packet_id in cached else self.index_packet(p) for p in packets
        ]
        note_texts = [self.note_texts(p) for p in packets]  # parsed once per rebuild
        notes = [self._note_vectors(p, t) for p, t in zip(packets, note_texts, strict=True)]
        vectors = [
            np.concatenate([v, n]) if len(n) else v for v, n in zip(vectors, notes, strict=True)
        ]
        self.cache.prune([*(r.packet_id for r in records), self._everyday_key])
        noted = [bool(len(n)) for n in notes]
        named = [exemplar_texts(p) + t for p, t in zip(packets, note_texts, strict=True)]
        texts = [n if t else [] for n, t in zip(named, note_texts, strict=True)]
        index = ExemplarGrid.build(packets, vectors, self.embedder.dim, noted, texts, named)
        lead, near_lead = self.everyday_leads
        self._divide = None
        if near_lead < lead and packets:
            least = self.divide_min_texts
            self._divide = Divide.fit(index.vectors, self.everyday().vectors, min_texts=least)
        self._index = index
        self._token = self._library_token()
        return self._index

    def everyday(self) -> Everyday:
        """Return the everyday questions and their vectors, embedding them unless cached."""
        if self._everyday is None:
            self._everyday = Everyday.load(self._everyday_texts, self.cache, self.embedder)
        return self._everyday

    def route(self, question: str) -> RouteDecision:
        """Return the decision for one question (see RouteDecision)."""
        return self.route_many([question])[0]

    def route_many(self, questions: Sequence[str]) -> list[RouteDecision]:
        """Return one decision per question, in order, embedding them in one batch; each
        read with its texting shorthand written out (fieldkit.router.shorthand)."""
        if not questions:
            return []
        questions = [written_out(q) for q in questions]
        index = self._ensure_index()
        load = getattr(self.embedder, "load", None)
        if index.packets and callable(load):
            load()  # one-off (seconds): kept out of route_ms, which times routing itself
        start = time.perf_counter()
        if not index.packets:
            ms = (time.perf_counter() - start) * 1000 / len(questions)
            reason = self._empty_reason()
            return [RouteDecision(None, None, 0.0, 0.0, [], ms, reason) for _ in questions]
        everyday = self.everyday()
        rows: list[np.ndarray] = []
        cosines: list[np.ndarray] = []  # the scores before shared words (see NOTES_LEXICAL)
        which: list[int] = []  # per question: the nearest everyday question, and its cosine
        near: list[float] = []
        sides: list[float] = []  # per question: its side of the library's divide (nan: none)
        for first in range(0, len(questions), BATCH):  # bounds the (batch, P, width) grid
            batch = questions[first : first + BATCH]
            queries = self.embedder.embed(batch)
            cosines.extend(index.scores(queries, self.method, self.top_k, self.blend))
            rows.extend(cosines[first:])
            best, cosine = everyday.nearest(queries)
            which.extend(best.tolist())
            near.extend(cosine.tolist())
            divide = self._divide
            sides.extend(divide.side(queries).tolist() if divide else [np.nan] * len(batch))
            if self.notes_lexical and index.lexicon is not None:
                for q, question in enumerate(batch, first):
                    rows[q] = rows[q] + self.notes_lexical * index.shared_words(question)
        raw = np.stack(rows)
        withheld = np.array([p.packet_id in self._withheld for p in index.packets])
        scores = np.where(withheld, -np.inf, raw)  # the usable-packet rule (store/usable.py)
        order = np.argsort(-scores, axis=1)[:, : max(self.show, 2)]
        common = everyday.tokens  # a code an everyday question names is no packet's
        ms = (time.perf_counter() - start) * 1000 / len(questions)
        decisions = []
        for q, ranks in enumerate(order):
            ranks = ranks[np.isfinite(scores[q, ranks])]
            if len(ranks) == 0:
                decision = RouteDecision(None, None, 0.0, 0.0, [], ms, self._empty_reason())
            else:
                question, side = questions[q], sides[q]
                decision = self._decide(index, scores[q], ranks, ms, question, common, side)
                if decision.route is not None:
                    own = float(cosines[q][index.position[decision.packet_id]])
                    leads, route = self.everyday_leads, decision.route
                    why = everyday.objection(which[q], near[q], own, route, leads, side)
                    if why:
                        decision = replace(decision, route=None, packet_id=None, reason=why)
            if withheld.any():
                w = int(np.where(withheld, raw[q], -np.inf).argmax())
                if raw[q, w] >= max(decision.score, self.min_score):
                    problem = self._withheld[index.packets[w].packet_id]
                    decision = replace(
                        decision, reason=f"{decision.reason}; not used: {as_clause(problem)}"
                    )
            decisions.append(decision)
        return decisions

    def _named(
        self,
        index: ExemplarGrid,
        row: np.ndarray,
        question: str,
        common: AbstractSet[str],
        shown: list[Candidate],
        ms: float,
    ) -> RouteDecision | None:
        """Return the route to the best of the packets that name a code of the question
        (a model number, a fault code: ExemplarGrid.naming) which no everyday question
        names, when they are all of one domain; else None. A small embedder blurs codes,
        and a code only one domain's texts hold says where the question belongs."""
        held, codes = index.naming(question, common)
        held = [i for i in held if np.isfinite(row[i])]
        if not held or len({int(index.domains[i]) for i in held}) != 1:
            return None
        top = max(held, key=lambda i: float(row[i]))
        packet, score = index.packets[top], float(row[top])
        _, margin = index.lead(row, top)  # below 0 when another domain's packet scored higher
        reason = f"routed to {packet.name}: {score:.2f}, and it alone names {', '.join(codes)}"
        return RouteDecision(packet.name, packet.packet_id, score, margin, shown, ms, reason)

    def _empty_reason(self) -> str:
        packets = self.library.list_packets()
        if packets and not any(self.eligible(r) for r in packets):
            return "no packet in the library was made for this base model"
        if packets:
            return "no packet in the library may answer here"
        return "the library has no packets"

    def _decide(
        self,
        index: ExemplarGrid,
        row: np.ndarray,
        ranks: np.ndarray,
        ms: float,
        question: str = "",
        common: AbstractSet[str] = frozenset(),
        side: float = np.nan,
    ) -> RouteDecision:
        """Route to the best packet when its score reaches its high tier, or its rescue
        score with a lead of its rescue margin over the best packet of another domain; a
        packet scored against its notes has its own tiers (NOTES_*). Below them, route to
        the packets of one domain that alone name a code of the question (`_named`);
        failing that, to the best packet when the question leans to the library's side
        of the divide (`side`: Divide.side; see LEANING).
        `min_margin` (default 0) is a lead required at every score of the tiers (a code
        may name a packet that another domain's outscores: its lead is then below 0)."""
        ranked = [
            Candidate(index.packets[i].name, index.packets[i].packet_id, float(row[i]))
            for i in ranks
        ]
        best, shown = ranked[0], ranked[: self.show]
        rival, margin = index.lead(row, int(ranks[0]))
        if index.noted[ranks[0]]:
            high, rescue, need = self.notes_tiers
        else:
            high, rescue, need = self.min_score, self.rescue_score, self.rescue_margin
        rescued = best.score >= rescue and margin >= need
        if best.score < high and not rescued:
            named = self._named(index, row, question, common, shown, ms) if self.codes else None
            if named is not None:
                return named
            low, lead, lean = self.leaning or (np.inf, np.inf, np.inf)
            if not (best.score >= low and margin >= lead and side >= lean):
                reason = f"no expert fits: best {best.name} {best.score:.2f} < {high:.2f}" + (
                    f", and {margin:.3f} ahead of the next domain < {need:.3f}"
                    if best.score >= rescue
                    else ""
                )
                return RouteDecision(None, None, best.score, margin, shown, ms, reason)
        rival_name = index.packets[rival].name if rival is not None else ""
        if margin < self.min_margin:
            reason = (
                f"too close to call: {best.name} {best.score:.2f} vs {rival_name} "
                f"{float(row[rival]) if rival is not None else 0.0:.2f} "
                f"(margin {margin:.2f} < {self.min_margin:.2f})"
            )
            return RouteDecision(None, None, best.score, margin, shown, ms, reason)
        other = " (another domain's best)" if ranked[1:2] and ranked[1].name != rival_name else ""
        runner_up = f", {margin:.2f} ahead of {rival_name}{other}" if rival is not None else ""
        reason = f"routed to {best.name}: {best.score:.2f}{runner_up}"
        if best.score < high and rescued:  # under the tier it names when it abstains
            reason += f"; under {high:.2f}, but that far ahead"
        elif best.score < high:
            reason += f", on the library's side of its divide ({side:+.2f})"
        return RouteDecision(best.name, best.packet_id, best.score, margin, shown, ms, reason)
