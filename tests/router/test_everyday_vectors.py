"""The shipped everyday questions' vectors: made for the list as shipped, used by a new
home instead of embedding the list, and ignored when they do not fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fieldkit.home import Home
from fieldkit.router import everyday as everyday_module
from fieldkit.router.embedder import MiniLMEmbedder
from fieldkit.router.everyday import Everyday, everyday_questions, shipped_vectors
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.vectors import VectorCache
from tests.fixtures.embedder import CountingEmbedder


@pytest.fixture
def cache(home: Home) -> Iterator[VectorCache]:
    library = Library.open(home, identity=Identity.load_or_create(home))
    yield library.vectors("exemplar_embeddings")
    library.close()


def test_the_shipped_vectors_fit_the_shipped_list(minilm: MiniLMEmbedder) -> None:
    """A list changed without `python -m fieldkit.router.everyday` fails here."""
    texts = everyday_questions()
    vectors = shipped_vectors(texts, minilm.id, minilm.dim)
    assert vectors.shape == (len(texts), minilm.dim)
    sample = list(range(0, len(texts), 97))
    fresh = minilm.embed([texts[i] for i in sample])
    cosines = np.einsum("nd,nd->n", fresh, vectors[sample])
    assert cosines.min() > 0.999


def test_a_new_home_embeds_only_its_own_questions(
    cache: VectorCache, counting_embedder: CountingEmbedder
) -> None:
    own = ["How do I descale a kettle?", "Which football boots suit a muddy pitch?"]
    texts = [*everyday_questions(), *own]
    loaded = Everyday.load(texts, cache, counting_embedder)
    assert counting_embedder.texts == own
    assert loaded.vectors.shape == (len(texts), counting_embedder.dim)
    again = Everyday.load(texts, cache, counting_embedder)  # now from the library's cache
    assert counting_embedder.texts == own
    assert np.array_equal(again.vectors, loaded.vectors)


def test_vectors_that_do_not_fit_are_not_used(
    cache: VectorCache,
    counting_embedder: CountingEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shipped = everyday_questions()
    other = ["How do I descale a kettle?", *shipped]  # not the shipped list's prefix
    Everyday.load(other, cache, counting_embedder)
    assert counting_embedder.texts == other
    dim = counting_embedder.dim
    assert len(shipped_vectors(shipped, counting_embedder.id, dim)) == len(shipped)
    assert not len(shipped_vectors(shipped, "another-embedder", dim))
    (tmp_path / "router").mkdir()
    (tmp_path / "router" / "everyday.npz").write_bytes(b"not a numpy file")
    monkeypatch.setattr(everyday_module, "assets_dir", lambda: tmp_path)
    assert shipped_vectors(shipped, counting_embedder.id, dim).shape == (0, dim)
