"""A record a person picks to answer from (`ask --passage`, the agent's `passage` option,
the Ask screen's Ctrl+N): the notes judged that nothing covers the question, and the asker,
shown the nearest record, knows it is theirs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fieldkit.answering import Parts, answer, ground
from fieldkit.answers import NOTES, Answer, grounded_messages
from fieldkit.cli import main
from fieldkit.engine.engine import Engine
from fieldkit.errors import LibraryError
from fieldkit.router.retrieval import PassageIndex
from fieldkit.services import Services
from tests.test_answering import PUMP_NOTES, noted_home  # noqa: F401 (a fixture)

OFFSIDE = "What is the offside rule in football?"  # the pumps notes have nothing on it
PICKED = "Answered from the record you picked, pumps r3: Controller reset?"


def test_a_picked_record_alone_grounds_the_answer(noted_home, minilm, tiny_model_dir):  # noqa: F811
    services = Services.build(noted_home.root, tiny_model_dir)
    try:
        index = PassageIndex(services.library, minilm)
        pumps, plain = services.library.get("pumps"), services.library.get("plain")
        picked = ground(OFFSIDE, pumps, index, passage="r3")
        assert (picked.grounding, picked.picked, picked.gap) == (NOTES, "r3", None)
        assert picked.caution == PICKED
        assert [s.passage_id for s in picked.sources] == ["r3"]
        assert picked.messages == grounded_messages(OFFSIDE, [PUMP_NOTES[2]])
        shown = {h.passage_id: h.score for h in index.search(pumps.packet_id, OFFSIDE, k=3)}
        assert picked.sources[0].score == pytest.approx(shown["r3"])  # as a search shows it
        with pytest.raises(LibraryError) as caught:
            ground(OFFSIDE, pumps, index, passage="r9")
        assert str(caught.value) == "The pumps packet has no record 'r9' to answer from."
        with pytest.raises(LibraryError) as caught:
            ground(OFFSIDE, plain, index, passage="r3")
        assert str(caught.value) == "The plain packet has no notes to answer from."
        with pytest.raises(LibraryError) as caught:
            ground(OFFSIDE, None, index, passage="r3")
        assert (
            str(caught.value) == "A record was picked, but no packet: name the packet it is from."
        )
    finally:
        services.close()


def test_an_answer_from_a_picked_record_is_the_adapters_on_it(noted_home, minilm, tiny_model_dir):  # noqa: F811
    library = Services.build(noted_home.root, tiny_model_dir).library
    with Engine(tiny_model_dir) as engine:
        parts = Parts(engine, library, None, PassageIndex(library, minilm))
        got = answer(parts, OFFSIDE, packet="pumps", passage="r3", max_tokens=8)
        adapter = library.load_adapter(library.get("pumps"))
        prompt = grounded_messages(OFFSIDE, [PUMP_NOTES[2]])
        assert got.text == engine.answer(prompt, adapter, max_tokens=8, clean=True).text
        assert (got.grounding, got.picked, got.caution) == (NOTES, "r3", PICKED)
        data = got.to_dict()
        assert data["picked"] == "r3"
        assert Answer.from_dict(data).picked == "r3"
        assert answer(parts, OFFSIDE, packet="pumps", max_tokens=2).to_dict()["picked"] is None
    library.close()


def test_ask_passage_answers_from_the_record_the_gap_answer_named(noted_home, tiny_model_dir):  # noqa: F811
    runner = CliRunner()
    base = ["--home", str(noted_home.root), "--model", str(tiny_model_dir), "ask", "--no-server"]
    gap = runner.invoke(main, [*base, OFFSIDE, "--adapter", "pumps", "--max-tokens", "4"])
    assert gap.exit_code == 0, gap.output
    nearest = gap.output.split("nearest record, as written above: pumps ")[1].split(" ")[0]
    record = next(p for p in PUMP_NOTES if p.passage_id == nearest)
    said, where = gap.output.splitlines()[1:3]  # under the gap sentence: the record, as written
    assert (said, where) == (record.text, "(nothing generated: the nearest record as written)")
    hint = f"(to answer from it anyway: fieldkit ask --adapter pumps --passage {nearest} QUESTION)"
    assert hint in gap.output.splitlines()
    again = runner.invoke(
        main, [*base, OFFSIDE, "--adapter", "pumps", "--passage", nearest, "--max-tokens", "4"]
    )
    assert again.exit_code == 0, again.output
    assert again.output.startswith(f"Answered from the record you picked, pumps {nearest}: ")
    assert f"[1] pumps {nearest} (" in again.output
    assert "to answer from it anyway" not in again.output
    unknown = runner.invoke(main, [*base, OFFSIDE, "--adapter", "pumps", "--passage", "r9"])
    assert unknown.exit_code == 1
    assert unknown.output == "fieldkit: The pumps packet has no record 'r9' to answer from.\n"
    # an id names a record of one packet: r3 may be another record in the packet routed to
    for flags in (["--base"], ["--adapter", "pumps", "--no-notes"], []):
        refused = runner.invoke(main, [*base, OFFSIDE, *flags, "--passage", "r3"])
        assert refused.exit_code == 2
        assert "--passage names a record of one packet's notes" in refused.output
