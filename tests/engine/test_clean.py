"""Clean decoding: whole sentences, a stop on repeats, no half sentence at the end."""

from __future__ import annotations

from pathlib import Path

from fieldkit.engine.clean import CleanText, fed
from fieldkit.engine.engine import Engine


def stream(text: str, natural: bool = True) -> tuple[str, CleanText]:
    """Feed `text` word by word as a model would; return what a person sees."""
    return fed(text, natural)


def test_a_repeated_sentence_stops_the_answer():
    shown, clean = stream(
        "Dry maize to 12.5% moisture. Store it in bags. Dry maize to 12.5% moisture. Then"
    )
    assert shown == "Dry maize to 12.5% moisture. Store it in bags."
    assert clean.repeated


def test_a_run_of_words_repeated_inside_a_sentence_stops_it():
    text = "Check the filter every week and clean the mesh with water, check the filter every week and clean the mesh"
    shown, clean = stream(f"Open the lid. {text}")
    assert shown == "Open the lid."  # the looping sentence is dropped whole
    assert clean.repeated
    alone, _ = stream(text)  # nothing shown before it: the words before the loop stay
    assert alone == "Check the filter every week and clean the mesh with water,"


def test_a_sentence_cut_by_the_token_budget_is_dropped():
    shown, clean = stream("Use 5 kg per bag. Then wait for the", natural=False)
    assert shown == "Use 5 kg per bag."
    assert not clean.repeated
    ended, _ = stream("Use 5 kg per bag. Then wait", natural=True)  # EOS: the model ended it
    assert ended == "Use 5 kg per bag. Then wait"
    only, _ = stream("No sentence ends here", natural=False)  # better than nothing
    assert only == "No sentence ends here"


def test_a_stutter_inside_one_word_stops_the_answer():
    clean = CleanText()
    shown = clean.feed("The vvm sticker stage 3 is a type of ")
    for _ in range(40):  # the model writes "v" after "v": a word that never ends
        shown += clean.feed("vv")
        if clean.stopped:
            break
    assert clean.repeated
    assert shown == "The vvm sticker stage 3 is a type of"  # the words before it, alone
    after, _ = stream("Keep it cold. " + "ab" * 30)
    assert after == "Keep it cold."
    table, _ = stream("Mix 1:1 with water. Rates: 10-20-10 in mm, 5.5.5 at most.")
    assert table == "Mix 1:1 with water. Rates: 10-20-10 in mm, 5.5.5 at most."


def test_legitimate_repeats_of_short_phrases_pass():
    text = "Give the vaccine at day 5. Give the booster at day 26. Repeat every 10 weeks."
    shown, clean = stream(text)
    assert shown == text
    assert not clean.repeated


def test_engine_clean_output_is_the_raw_output_cleaned(tiny_model_dir: Path):
    question = "What does the pump need?"
    with Engine(tiny_model_dir) as engine:
        raw = engine.answer(question, max_tokens=40)
        clean = engine.answer(question, max_tokens=40, clean=True)
        streamed = "".join(c.text for c in engine.generate(question, max_tokens=40, clean=True))
    assert streamed == clean.text
    assert raw.text.startswith(clean.text.rstrip())
    assert clean.finish_reason in ("stop", "length", "repeat")
    expected, _ = stream(raw.text, natural=raw.finish_reason == "stop")
    assert clean.text == expected or clean.finish_reason == "repeat"


def test_a_list_number_is_never_shown_alone():
    """ "3." is held back with its item: a list cut by a repeat ends on a whole item."""
    text = "Follow these steps:\n\n1. Open the settings app.\n2. Tap Sounds.\n3. Tap Sounds.\n4."
    shown, clean = stream(text)
    assert shown == "Follow these steps:\n\n1. Open the settings app.\n2. Tap Sounds.\n"
    assert clean.repeated
    cut, _ = stream("Steps:\n1. Open the app.\n2.", natural=False)  # the budget ran out
    assert cut == "Steps:\n1. Open the app.\n"
    listed, _ = stream("Steps:\n1. Open the app.\n2. Tap Sounds.")
    assert listed == "Steps:\n1. Open the app.\n2. Tap Sounds."


def test_numbers_inside_sentences_are_not_list_numbers():
    """Only a number that opens a sentence and is followed by a space is a list number:
    two sentences that differ in a figure are not a repeat."""
    text = "Dry to 12.5% moisture. Dry to 13.5% moisture. Store both in bags."
    shown, clean = stream(text)
    assert shown == text
    assert not clean.repeated


def test_a_batch_answer_cleaned_is_what_the_engine_shows(tiny_model_dir: Path):
    """The quality harness generates in batches, then cleans each answer whole
    (QualityRun.shown): it must score what `ask` shows, cut where `ask` cuts."""
    from fieldkit.engine.clean import cleaned
    from fieldkit.training.train import generate_ended

    questions = ["What does the pump need?", "Where is the well?"]
    batched = generate_ended(tiny_model_dir, None, questions, max_tokens=24)
    with Engine(tiny_model_dir) as engine:
        for question, (text, ended) in zip(questions, batched, strict=True):
            raw = engine.answer(question, max_tokens=24)
            shown = engine.answer(question, max_tokens=24, clean=True)
            assert (text, ended) == (raw.text.strip(), raw.finish_reason == "stop")
            assert cleaned(text, natural=ended) == shown.text.strip()
    assert cleaned("Dry it to 12%. Bag it. Bag it. Then", natural=False) == "Dry it to 12%. Bag it."
    assert cleaned("Dry it to 12%. Then bag", natural=False) == "Dry it to 12%."
    assert cleaned("Dry it to 12%. Then bag", natural=True) == "Dry it to 12%. Then bag"
