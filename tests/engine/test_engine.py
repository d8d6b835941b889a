"""The engine on a tiny random llama model, checked against plain mlx-lm fresh loads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fieldkit.engine.engine import Engine
from fieldkit.errors import FieldkitError, ModelError
from fieldkit.store.adapter import Adapter, AdapterConfig
from tests.fixtures.tiny_model import PROJECTION_SHAPES

QUESTION = "What does the pump need?"
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[Engine]:
    eng = Engine(tiny_model_dir)
    eng.load()
    yield eng
    eng.close()


def reference(model_dir: Path, adapter: Adapter | None, max_tokens: int = 12):
    """Plain mlx-lm: load base (+ adapter) fresh and generate greedily."""
    from fieldkit.testing.reference_model import reference_generate

    return reference_generate(model_dir, adapter, MESSAGES, max_tokens=max_tokens, with_logits=True)


def test_load_is_idempotent_and_describes_the_model(engine: Engine, tiny_model_dir: Path) -> None:
    from fieldkit.store.models import model_fingerprint

    info = engine.load()
    assert engine.load() == info
    assert info.architecture == "llama"
    assert info.n_layers == 4
    assert info.dtype == "float32"
    assert info.fingerprint == model_fingerprint(tiny_model_dir)


def test_a_caller_can_stop_waiting_for_a_load_that_goes_on(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_unless gives up the wait, not the load: the TUI quits at once, and closing then
    waits for the load with one sentence saying so (Engine.close)."""
    from fieldkit.engine import mlx_backend

    release, started = threading.Event(), threading.Event()
    real = mlx_backend.MlxRuntime

    def slow_disk(*args, **kwargs):  # the load held at its start, as on a slow disk
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(mlx_backend, "MlxRuntime", slow_disk)
    eng = Engine(tiny_model_dir)
    assert eng.load_unless(started.is_set) is False
    assert not eng.loaded
    told: list[str] = []
    threading.Timer(1.0, release.set).start()
    eng.close(told.append)
    assert told == ["Stopping once the model has finished loading."]
    assert eng.load_unless(lambda: False) is True  # a new MLX thread loads it again
    eng.close(told.append)
    assert len(told) == 1  # nothing under way: closed at once, with nothing to say


def test_mlx_work_stays_on_the_engine_thread(engine: Engine) -> None:
    engine.answer(QUESTION, max_tokens=2)
    assert engine._mlx_thread not in (0, threading.get_ident())
    with pytest.raises(RuntimeError, match="engine's own thread"):
        engine._runtime_or_load()


def test_generate_streams_deltas_then_a_result(engine: Engine) -> None:
    chunks = list(engine.generate(QUESTION, max_tokens=10))
    result = chunks[-1].result
    assert result is not None
    assert all(c.result is None for c in chunks[:-1])
    assert len(chunks) > 2
    assert "".join(c.text for c in chunks) == result.text
    assert result.generation_tokens == len(result.tokens) == 10
    assert result.finish_reason == "length"
    assert result.prompt_tokens > 5
    assert result.prompt_tps > 0
    assert result.generation_tps > 0
    assert result.adapter is None


def test_base_mode_equals_the_plain_model(
    engine: Engine, tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    plain = reference(tiny_model_dir, None)
    engine.swap(make_adapter(1))  # leave an adapter resident first
    result = engine.answer(QUESTION, None, max_tokens=12)
    assert list(result.tokens) == plain.tokens
    assert np.array_equal(engine.next_token_logits(QUESTION, None), plain.logits)


def test_swap_a_b_a_matches_fresh_loads(
    engine: Engine, tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    a, b = make_adapter(1), make_adapter(2)
    fresh = {ad.key: reference(tiny_model_dir, ad) for ad in (a, b)}
    base = engine.answer(QUESTION, None, max_tokens=12).tokens
    seen = []
    for ad in (a, b, a):
        result = engine.answer(QUESTION, ad, max_tokens=12)
        assert result.adapter == ad.key
        assert list(result.tokens) == fresh[ad.key].tokens
        logits = engine.next_token_logits(QUESTION, ad)
        np.testing.assert_allclose(logits, fresh[ad.key].logits, rtol=1e-5, atol=1e-5)
        seen.append(result.tokens)
    assert seen[0] == seen[2]
    assert len({seen[0], seen[1], base}) == 3, "adapters must change the output"


@pytest.mark.parametrize(
    "profile",
    [
        {"rank": 16},
        {"rank": 2, "num_layers": 2},
        {"rank": 8, "keys": ("self_attn.q_proj", "self_attn.v_proj"), "scale": 5.0},
    ],
)
def test_other_profile_adapter_matches_a_fresh_load(
    engine: Engine, tiny_model_dir: Path, make_adapter: Callable[..., Adapter], profile: dict
) -> None:
    adapter = make_adapter(3, **profile)
    engine.swap(make_adapter(1))
    result = engine.answer(QUESTION, adapter, max_tokens=12)
    fresh = reference(tiny_model_dir, adapter)
    assert list(result.tokens) == fresh.tokens
    np.testing.assert_allclose(
        engine.next_token_logits(QUESTION, adapter), fresh.logits, rtol=1e-5, atol=1e-5
    )


def test_narrow_resident_profile_widens_once(
    tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    narrow = AdapterConfig(num_layers=1, keys=("self_attn.q_proj",))
    wide = make_adapter(4)
    with Engine(tiny_model_dir, profile=narrow) as eng:
        eng.load()
        assert eng.reinstall_ms == []
        result = eng.answer(QUESTION, wide, max_tokens=12)
        assert len(eng.reinstall_ms) == 1
        eng.answer(QUESTION, make_adapter(5), max_tokens=2)
        assert len(eng.reinstall_ms) == 1, "slots are widened once, not per swap"
        base = eng.answer(QUESTION, None, max_tokens=12)
    assert list(result.tokens) == reference(tiny_model_dir, wide).tokens
    assert list(base.tokens) == reference(tiny_model_dir, None).tokens


def test_wrong_shape_is_refused_and_the_active_adapter_stays(
    engine: Engine, make_adapter: Callable[..., Adapter]
) -> None:
    from tests.fixtures.tiny_model import random_adapter

    good = make_adapter(1)
    before = engine.answer(QUESTION, good, max_tokens=6).tokens
    shapes = dict(PROJECTION_SHAPES, **{"mlp.down_proj": (96, 64)})
    bad = random_adapter(9, shapes=shapes)
    with pytest.raises(ModelError, match=r"mlp\.down_proj on layer 0 has shapes \(96, 4\)"):
        engine.swap(bad)
    with pytest.raises(ModelError, match="down_proj"):
        list(engine.generate(QUESTION, bad, max_tokens=3))
    assert engine.answer(QUESTION, good, max_tokens=6).tokens == before


def test_unknown_tensor_names_are_refused(
    engine: Engine, make_adapter: Callable[..., Adapter]
) -> None:
    good = make_adapter(1)
    extra = dict(good.tensors)
    extra["model.layers.9.self_attn.q_proj.lora_a"] = extra[
        "model.layers.0.self_attn.q_proj.lora_a"
    ]
    with pytest.raises(FieldkitError, match="tensor model.layers.9.* on layers 0 to 3 only"):
        engine.swap(Adapter(good.config, extra, "extra-layer"))
    missing = {k: v for k, v in good.tensors.items() if "layers.2.mlp.up_proj" not in k}
    with pytest.raises(FieldkitError, match="lacks the tensor model.layers.2.mlp.up_proj"):
        engine.swap(Adapter(good.config, missing, "missing"))
    deep = make_adapter(1, num_layers=4)
    too_deep = Adapter(AdapterConfig(rank=4, num_layers=6), deep.tensors, "deep")
    with pytest.raises(FieldkitError, match="spans 6 layers but the base model has 4"):
        engine.swap(too_deep)


def test_cancel_stops_generation(engine: Engine) -> None:
    cancel = threading.Event()
    chunks = []
    for chunk in engine.generate(QUESTION, max_tokens=200, cancel=cancel):
        chunks.append(chunk)
        cancel.set()
    result = chunks[-1].result
    assert result is not None
    assert result.finish_reason == "cancelled"
    assert result.generation_tokens < 5


def test_a_long_prompt_is_dropped_between_the_steps_that_read_it(engine: Engine) -> None:
    """A question of thousands of tokens takes minutes to read on a small CPU: a cancel
    (the asker hung up, the server stops) is heeded after the step under way."""
    from fieldkit.engine.mlx_backend import PREFILL_STEP

    polls: list[int] = []

    def cancelled() -> bool:  # set while the first step of the prompt is read
        polls.append(1)
        return len(polls) >= 2

    def work():  # noqa: ANN202
        runtime = engine._runtime_or_load()
        prompt = runtime.encode_chat([{"role": "user", "content": "pump " * 3 * PREFILL_STEP}])
        assert len(prompt) > 3 * PREFILL_STEP
        emit = lambda text: True  # noqa: E731
        return runtime.generate(
            prompt, max_tokens=5, temperature=0.0, emit=emit, cancelled=cancelled
        )

    stats = engine._call(work)
    assert (stats.finish_reason, stats.tokens, len(polls)) == ("cancelled", [], 2)
    assert engine.answer(QUESTION, max_tokens=3).generation_tokens == 3  # still serving


def test_leaving_the_stream_early_frees_the_engine(engine: Engine) -> None:
    stream = engine.generate(QUESTION, max_tokens=2000)
    next(stream)
    stream.close()
    result = engine.answer(QUESTION, max_tokens=3)
    assert result.generation_tokens == 3


def test_stop_strings_end_the_answer_and_are_not_shown(engine: Engine) -> None:
    full = engine.answer(QUESTION, max_tokens=12).text
    stop = full.strip().split()[-1]
    cut = engine.answer(QUESTION, max_tokens=12, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]


def test_lru_evicts_by_bytes(tiny_model_dir: Path, make_adapter: Callable[..., Adapter]) -> None:
    a, b, c = make_adapter(1), make_adapter(2), make_adapter(3)
    size = sum(t.nbytes for t in a.tensors.values())
    with Engine(tiny_model_dir, cache_bytes=int(size * 2.5)) as eng:
        for ad in (a, b, a, c):
            eng.swap(ad)
        assert eng.cached_adapters() == [a.key, c.key]  # b was least recently used
        assert eng.cached_bytes == 2 * size
        assert eng.answer(QUESTION, b, max_tokens=4).tokens  # b converts again
        assert eng.cached_adapters() == [c.key, b.key]


def test_swaps_from_several_threads_are_serialised(
    engine: Engine, make_adapter: Callable[..., Adapter]
) -> None:
    adapters = [make_adapter(1), make_adapter(2), None]
    expected = [engine.answer(QUESTION, ad, max_tokens=8).tokens for ad in adapters]
    results: dict[int, tuple[int, ...]] = {}

    def ask(i: int) -> None:
        results[i] = engine.answer(QUESTION, adapters[i % 3], max_tokens=8).tokens

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(6)] == expected * 2


async def test_astream_gives_the_same_answer(engine: Engine) -> None:
    expected = engine.answer(QUESTION, max_tokens=8)
    texts = []
    result = None
    async for chunk in engine.astream(QUESTION, max_tokens=8):
        texts.append(chunk.text)
        result = chunk.result or result
    assert result is not None
    assert "".join(texts) == expected.text
    assert result.tokens == expected.tokens


def test_mean_logprobs_scores_each_prefix_as_plain_mlx_lm_does(
    engine: Engine, tiny_model_dir: Path
) -> None:
    """Prefixes of different lengths share one padded batch; each gets the mean
    log-probability of the text's tokens that the plain model gives it alone."""
    import mlx.core as mx
    from mlx_lm import load

    prefixes = ["Record:\nThe pump needs a 48 V battery bank.\n\nA technician asks:", "Pump."]
    got = engine.mean_logprobs(prefixes, QUESTION)
    model, tokenizer = load(str(tiny_model_dir))
    text = list(tokenizer.encode(" " + QUESTION, add_special_tokens=False))
    for prefix, score in zip(prefixes, got, strict=True):
        head = list(tokenizer.encode(prefix))
        logits = model(mx.array(head + text)[None])[0].astype(mx.float32)
        logprobs = np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
        want = np.mean([logprobs[len(head) - 1 + j, t] for j, t in enumerate(text)])
        assert score == pytest.approx(want, abs=1e-4)
    assert got.shape == (2,)
    assert np.all(got < 0)


def test_mean_logprobs_of_another_architecture_reads_the_whole_output(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An architecture outside mlx_backend.PLAIN_HEADS might change its logits after its
    output layer, so it is read through the whole model: the same numbers here."""
    from fieldkit.engine import mlx_backend

    prefixes = ["Record:\nKeep vaccines at 2-8 C.\n\nA technician asks:", "Pump."]
    fast = engine.mean_logprobs(prefixes, QUESTION)
    assert mlx_backend._body_and_head(engine._runtime.model) is not None  # the fast path ran
    monkeypatch.setattr(mlx_backend, "PLAIN_HEADS", ())
    whole = engine.mean_logprobs(prefixes, QUESTION)
    assert whole == pytest.approx(fast, abs=1e-5)


def test_generating_is_true_while_a_stream_is_open(engine: Engine) -> None:
    assert not engine.generating
    stream = engine.generate(MESSAGES, max_tokens=4)
    next(stream)
    assert engine.generating
    stream.close()
    assert not engine.generating


def test_a_missing_model_says_how_to_install_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="fieldkit model install-default"):
        Engine(tmp_path / "nothing").load()


def test_empty_question_is_refused(engine: Engine) -> None:
    with pytest.raises(FieldkitError, match="question is empty"):
        list(engine.generate("   "))


@pytest.fixture(scope="module")
def quantized_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model quantized to 4 bits by mlx-lm, like the MLX folders users bring."""
    import contextlib
    import io

    from fieldkit.engine.blas import preload_openblas

    preload_openblas()  # before mlx loads
    from mlx_lm.convert import convert

    out = tmp_path_factory.mktemp("quantized") / "tiny-4bit"
    with contextlib.redirect_stdout(io.StringIO()):
        convert(str(tiny_model_dir), str(out), quantize=True, q_group_size=32, q_bits=4)
    return out


def test_a_quantized_model_swaps_like_a_fresh_load(
    quantized_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    a, b = make_adapter(1), make_adapter(2)
    with Engine(quantized_model_dir) as eng:
        assert eng.load().dtype == "quantized"
        got = [eng.answer(QUESTION, ad, max_tokens=10).tokens for ad in (a, b, None)]
    want = [reference(quantized_model_dir, ad, max_tokens=10).tokens for ad in (a, b, None)]
    assert [list(t) for t in got] == want
    assert len(set(got)) == 3


def test_every_special_token_ends_an_answer(tiny_model_dir: Path) -> None:
    """The bug: asked a question too long for it, the model wrote <|endoftext|>, which is
    not its end-of-turn token, and that token's text was the answer."""
    from fieldkit.engine.mlx_backend import MlxRuntime

    runtime = MlxRuntime(tiny_model_dir, AdapterConfig())
    special = set(runtime.tokenizer.all_special_ids)
    assert special - set(runtime.tokenizer.eos_token_ids)  # some beyond its end of turn
    assert special <= runtime.eos_ids


def test_a_prompt_past_the_model_s_context_is_refused_and_an_answer_kept_within_it(
    engine: Engine,
) -> None:
    """The bug: a question just under the 32,000-character limit, longer than the model
    reads, was answered with noise."""
    long = [{"role": "user", "content": "pump filter " * 3000}]
    with pytest.raises(FieldkitError, match=r"the model reads at most 2,048 at once"):
        engine.answer(long, None, max_tokens=8)
    near = [{"role": "user", "content": "pump filter " * 1000}]
    result = engine.answer(near, None, max_tokens=2000)
    assert result.prompt_tokens < 2048
    assert result.prompt_tokens + result.generation_tokens <= 2048
    assert result.prompt_tokens + result.generation_tokens == 2048  # cut there, not earlier
    assert result.finish_reason == "length"
