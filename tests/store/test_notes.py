"""Packet notes: made from records or text, signed inside the manifest, checked, exported."""

from __future__ import annotations

import json

import pytest

from fieldkit.errors import PacketError
from fieldkit.store.notes import (
    MAX_NOTE_TEXT,
    MAX_NOTES,
    Passage,
    check_notes,
    notes_bytes,
    notes_count,
    notes_of,
    passages_from_records,
    passages_from_text,
    read_notes_file,
)
from fieldkit.store.packet import (
    EXEMPLARS_FORMAT,
    FORMAT_VERSION,
    NOTES_FORMAT,
    build_manifest,
    packet_id,
    read_packet_file,
    verify_manifest,
    write_packet_file,
)
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, exemplars_for, random_adapter

NOTES = [
    Passage("r1", "Vaccinate at day 5 and again at day 26.", "When are chicks vaccinated?"),
    Passage("r2", "Keep 4 hens per square metre.", None),
]


def build(identity, notes=None, created=1_700_000_000):
    return build_manifest(
        random_adapter(seed=3),
        identity,
        name="poultry",
        domain="poultry",
        description="Village poultry.",
        exemplars=exemplars_for("poultry"),
        base_model_id="test-base",
        base_fingerprint=TEST_BASE_FINGERPRINT,
        created=created,
        notes=notes,
    )


@pytest.fixture
def identity(home):
    from fieldkit.store.identity import Identity

    return Identity.load_or_create(home)


def test_records_become_passages_with_the_question_as_title():
    records = [
        {"instruction": "When are chicks vaccinated?", "input": "", "output": " At day 5. "},
        {"question": "How many hens?", "answer": "Four per square metre."},
    ]
    passages = passages_from_records(records)
    assert passages == [
        Passage("r1", "At day 5.", "When are chicks vaccinated?"),
        Passage("r2", "Four per square metre.", "How many hens?"),
    ]
    with pytest.raises(PacketError, match="Record 1 has no question and answer"):
        passages_from_records([{"instruction": "No answer?"}])


def test_text_is_split_into_paragraph_passages_under_their_headings():
    text = "# Feeding\n\nLayers eat 120 g a day.\n\nGive grit.\n\n## Water\nClean water daily.\n"
    passages = passages_from_text(text)
    assert [(p.passage_id, p.title, p.text) for p in passages] == [
        ("p1", "Feeding", "Layers eat 120 g a day."),
        ("p2", "Feeding", "Give grit."),
        ("p3", "Water", "Clean water daily."),
    ]
    long = " ".join(f"Sentence number {i} is here." for i in range(100))
    pieces = passages_from_text(long, max_chars=200)
    assert len(pieces) > 5
    assert all(len(p.text) <= 200 for p in pieces)
    assert " ".join(p.text for p in pieces) == long


def test_a_packet_without_notes_is_format_1_and_unchanged(identity):
    plain, signature, _ = build(identity)
    again, _, _ = build(identity, notes=[])
    assert plain["format"] == FORMAT_VERSION
    assert "notes" not in plain
    assert packet_id(plain) == packet_id(again)
    assert verify_manifest(plain, signature) == packet_id(plain)
    assert notes_of(plain) == []
    assert notes_count(plain) == 0


def test_notes_are_signed_inside_a_format_2_manifest(identity):
    manifest, signature, _ = build(identity, NOTES)
    assert manifest["format"] == NOTES_FORMAT
    assert verify_manifest(manifest, signature) == packet_id(manifest)
    assert notes_of(manifest) == NOTES
    assert notes_count(manifest) == 2
    assert manifest["notes"][1] == {"id": "r2", "text": "Keep 4 hens per square metre."}
    tampered = json.loads(json.dumps(manifest))
    tampered["notes"][0]["text"] = "Vaccinate at day 9 and again at day 26."
    with pytest.raises(PacketError, match="does not verify"):
        verify_manifest(tampered, signature)
    dropped = {k: v for k, v in manifest.items() if k != "notes"}
    with pytest.raises(PacketError, match="lacks the field notes"):
        verify_manifest(dropped, signature)
    smuggled = dict(build(identity)[0], notes=manifest["notes"])  # format 1 + notes
    with pytest.raises(PacketError, match="unknown field notes"):
        verify_manifest(smuggled, signature)


@pytest.mark.parametrize(
    ("notes", "message"),
    [
        ([], "non-empty list"),
        ("text", "non-empty list"),
        ([{"id": "a"}], "not a passage"),
        ([{"id": "a", "text": "x", "extra": 1}], "not a passage"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "repeated id"),
        ([{"id": "bad id", "text": "x"}], "bad or repeated id"),
        ([{"id": "a", "text": "   "}], "1 to 4000 characters"),
        ([{"id": "a", "text": "x" * (MAX_NOTE_TEXT + 1)}], "1 to 4000 characters"),
        ([{"id": "a", "text": "x", "title": 3}], "title"),
        ([{"id": f"n{i}", "text": "x"} for i in range(MAX_NOTES + 1)], "at most 1024"),
        ([{"id": f"n{i}", "text": "x" * 3999} for i in range(100)], "KiB"),
        ([{"id": "a", "text": "x", "asked": "When?"}], "at most 16 other phrasings"),
        ([{"id": "a", "text": "x", "asked": ["When?"] * 17}], "at most 16 other phrasings"),
        ([{"id": "a", "text": "x", "asked": [""]}], "at most 16 other phrasings"),
        ([{"id": "a", "text": "x", "asked": ["x" * 301]}], "at most 16 other phrasings"),
        ([{"id": "a", "text": "x", "asked": ["When\x1b?"]}], "control characters"),
    ],
)
def test_malformed_notes_are_refused_with_one_sentence(notes, message):
    with pytest.raises(PacketError, match=message):
        check_notes(notes)


def test_a_records_paraphrases_travel_as_its_passages_phrasings_in_format_4(identity):
    records = [
        {"instruction": "When are chicks vaccinated?", "output": "At day 5.",
         "paraphrases": ["What day do chicks get the vaccine?", " ", "When to vaccinate?"]},
        {"question": "How many hens?", "answer": "Four per square metre."},
    ]  # fmt: skip
    passages = passages_from_records(records)
    assert passages[0].asked == ("What day do chicks get the vaccine?", "When to vaccinate?")
    assert passages[1].asked == ()
    manifest, signature, _ = build(identity, passages)
    assert manifest["format"] == EXEMPLARS_FORMAT  # a format-3 reader would refuse `asked`
    assert manifest["notes"][0]["asked"] == list(passages[0].asked)
    assert "asked" not in manifest["notes"][1]
    assert verify_manifest(manifest, signature) == packet_id(manifest)
    assert notes_of(manifest) == passages
    with pytest.raises(PacketError, match="not a passage"):  # no phrasings before format 4
        verify_manifest(dict(manifest, format=NOTES_FORMAT), signature)
    plain, _, _ = build(identity, NOTES)
    assert plain["format"] == NOTES_FORMAT  # notes without phrasings stay format 2
    with pytest.raises(PacketError, match="paraphrases that are not a list"):
        passages_from_records([{"question": "Q?", "answer": "A.", "paraphrases": "Q2?"}])


def test_notes_survive_the_one_file_export(identity, tmp_path):
    manifest, signature, data = build(identity, NOTES)
    path = tmp_path / "poultry.fkpkt"
    with open(path, "wb") as out:
        write_packet_file(out, manifest, signature, data)
    packet = read_packet_file(path)
    assert notes_of(packet.manifest) == NOTES
    assert packet.signature == signature
    raw = bytearray(path.read_bytes())
    at = raw.find(b"day 26")
    raw[at + 4] = ord("9")  # "day 96": same length, the header still parses
    path.write_bytes(bytes(raw))
    with pytest.raises(PacketError, match="does not verify"):
        read_packet_file(path)


def test_the_byte_cost_of_notes_is_their_canonical_json(identity):
    plain = build(identity)[0]
    noted = build(identity, NOTES)[0]
    cost = notes_bytes(noted["notes"])
    from fieldkit.store.packet import canonical_bytes

    # the manifest grows by the notes, the key and a comma (format stays one digit)
    assert len(canonical_bytes(noted)) - len(canonical_bytes(plain)) == cost + len('"notes":,')


def test_notes_files_are_read_or_refused_with_one_sentence(tmp_path):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text('{"instruction": "Q?", "output": "A 5 m pipe."}\n\n')
    assert read_notes_file(jsonl) == [Passage("r1", "A 5 m pipe.", "Q?")]
    md = tmp_path / "notes.md"
    md.write_text("# Pumps\n\nClean the filter weekly.\n")
    assert read_notes_file(md) == [Passage("p1", "Clean the filter weekly.", "Pumps")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(PacketError, match="line 1 is not JSON"):
        read_notes_file(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(PacketError, match="holds no passages"):
        read_notes_file(empty)
    with pytest.raises(PacketError, match="notes file .*missing.md cannot be read"):
        read_notes_file(tmp_path / "missing.md")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PacketError, match="not UTF-8"):
        read_notes_file(binary)
