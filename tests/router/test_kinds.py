"""The kind of quantity a question asks for, and a record that states none of it: covered
at most in the cautious middle, and the answer says which kind its record lacks."""

from __future__ import annotations

import pytest

from fieldkit.answering import ground
from fieldkit.router.kinds import asked_kinds, unstated_kinds
from fieldkit.router.retrieval import PassageIndex
from fieldkit.services import Services
from tests.test_answering import noted_home  # noqa: F401 (a fixture)


@pytest.mark.parametrize(
    ("question", "kinds"),
    [
        ("kc-4 carrier fully loaded, how many kg?", ("weight",)),
        ("sg-1 silo how heavy empty, can 2 ppl shift it", ("weight",)),
        ("pk60 how many litres kerosene does it burn a day", ("volume",)),
        ("How deep should the pump hang?", ("distance",)),
        ("freezemark fm2 shelf life before it expires", ("duration",)),
        ("how warm should the brooder be?", ("temperature",)),
        ("vax store room humidity, what % is ok", ("percentage",)),
        ("il-160 plug fuse keeps blowing, what amp rating", ("current",)),
        ("price of SB-6 brush kit", ("price",)),
        ("How much does a SiloGuard SG-1 silo cost to buy?", ("price",)),
        ("what does a new tl-30 logger cost", ("price",)),
        # asked in passing, or not a quantity of a kind: nothing
        ("How far can the fridge lean during the move?", ()),
        ("How much feed does a hen need, and how much does underfeeding cost me?", ()),
        ("We hold the maize for the Christmas price. Which bag keeps it best?", ()),
        ("What is the limit for voltage loss on that cable?", ()),
        ("How often should the panels be cleaned?", ()),
    ],
)
def test_the_kind_a_question_asks_for(question: str, kinds: tuple[str, ...]) -> None:
    assert asked_kinds(question) == kinds


def test_a_record_states_a_kind_by_any_of_its_units() -> None:
    weight = "kc-4 carrier fully loaded, how many kg?"
    assert unstated_kinds(weight, ["Pack four ice packs around the vials."]) == ("weight",)
    assert unstated_kinds(weight, ["It weighs 3.5 kg packed."]) == ()
    assert unstated_kinds(weight, ["Four ice packs.", "Loaded, it is 3 kg."]) == ()  # a part's
    assert unstated_kinds("price of SB-6 brush kit", ["Brushes last 2 years."]) == ("price",)
    assert unstated_kinds("price of SB-6 brush kit", ["A kit costs KSh 1,200."]) == ()
    assert unstated_kinds("How long does it keep?", ["Keep it 6 months."]) == ()
    assert unstated_kinds("For how long?", ["Brood at 32 C for the first week."]) == ()
    assert unstated_kinds("For how long?", ["Brood at 32 C."]) == ("duration",)
    assert unstated_kinds("How long is the cable run?", ["Run 40 m of 4 mm² cable."]) == ()
    assert unstated_kinds("What is F-21?", ["F-21 means the wheel jammed."]) == ()


def test_a_record_stating_no_such_quantity_is_answered_with_a_caution(
    noted_home,  # noqa: F811
    minilm,
    tiny_model_dir,
) -> None:
    services = Services.build(noted_home.root, tiny_model_dir)
    try:
        index = PassageIndex(services.library, minilm)
        pumps = services.library.get("pumps")
        asked = "How often should I clean the intake filter, and what does a new one cost?"
        cover = index.coverage(pumps.packet_id, asked)
        assert (cover.covered, cover.sure, cover.unstated) == (True, False, ("price",))
        plain = index.coverage(pumps.packet_id, "How often should I clean the intake filter?")
        assert (plain.covered, plain.sure, plain.unstated) == (True, True, ())
        grounding = ground(asked, pumps, index)
        assert grounding.sources[0].passage_id == "r1"  # still read and cited
        assert grounding.caution == (
            "The pumps notes' closest record states no price; check the answer against it: "
            "Filter cleaning?"
        )
    finally:
        services.close()
