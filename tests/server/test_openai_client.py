"""The real `openai` client against a real agent (tiny model, two packets, MiniLM router)."""

from __future__ import annotations

import http.client
import json
import threading
import time

import openai
import pytest

from fieldkit.server.chat import Limits
from fieldkit.server.client import find_agent
from fieldkit.server.runtime import ServerError
from fieldkit.services import Services
from tests.server.conftest import COVERED, PUMP_QUESTIONS, RunningAgent, StartAgent, add_packet

QUESTION = "What does the pump need?"
JSON = {"Content-Type": "application/json"}


def client_for(running: RunningAgent, api_key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=running.base_url, api_key=api_key, max_retries=0, timeout=120)


def endless_stream(client: openai.OpenAI, max_tokens: int = 4000):  # noqa: ANN201
    """A streamed answer of the base model that runs on (no early stop on a repeat),
    its first two pieces read."""
    stream = client.chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=max_tokens,
        stream=True,
        extra_body={"fieldkit": {"clean": False}},
    )
    pieces = iter(stream)
    next(pieces)
    next(pieces)
    return stream, pieces


def reference(
    running: RunningAgent, question: str, packet: str | None, max_tokens: int, clean: bool = True
) -> str:
    """What a person reads of `fieldkit.answering.answer` for this packet (None: base
    model), without HTTP: the gap or caution sentence, if any, then the text."""
    from fieldkit.answering import Parts, answer

    agent = running.agent

    def work() -> str:
        parts = Parts(agent.services.engine, agent.services.library, agent.router, agent.passages)
        return answer(
            parts, question, packet=packet, base=packet is None, max_tokens=max_tokens, clean=clean
        ).shown_text

    return agent.on_library_sync(work)


def test_notes_ground_the_answer_and_come_back_as_sources(running: RunningAgent) -> None:
    reply = client_for(running).chat.completions.create(
        model="pumps", messages=[{"role": "user", "content": COVERED}], max_tokens=12
    )
    extras = reply.fieldkit
    assert extras["grounding"] == "notes"
    assert extras["sources"][0]["passage_id"] == "r1"
    assert "intake filter" in extras["sources"][0]["text"]
    assert extras["answer"]["sources"] == extras["sources"]
    assert isinstance(extras["unsupported"], list)
    assert reply.choices[0].message.content == reference(running, COVERED, "pumps", 12)


def test_models_lists_auto_base_and_each_usable_packet(running: RunningAgent) -> None:
    models = client_for(running).models.list()
    assert [m.id for m in models.data] == ["auto", "base", "goats", "pumps"]
    pumps = models.data[3]
    assert pumps.fieldkit["kind"] == "packet"
    assert len(pumps.fieldkit["packet_id"]) == 64


def test_auto_routes_and_says_why(running: RunningAgent) -> None:
    question = PUMP_QUESTIONS[3]
    reply = client_for(running).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": question}], max_tokens=8
    )
    assert reply.model == "pumps"
    route = reply.fieldkit["route"]
    assert route["route"] == "pumps"
    assert route["abstained"] is False
    assert route["runner_up"]["name"] == "goats"
    assert route["score"] > route["runner_up"]["score"]
    assert reply.fieldkit["swap_ms"] >= 0
    # the pumps notes have nothing on it: the answer is their nearest record as written
    assert reply.fieldkit["answer"]["as_written"] is True
    assert reply.usage.completion_tokens == 0
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == reference(running, question, "pumps", 8)


def test_a_packet_by_name_answers_with_its_adapter(running: RunningAgent) -> None:
    client = client_for(running)
    messages = [{"role": "user", "content": QUESTION}]
    goats = client.chat.completions.create(model="goats", messages=messages, max_tokens=8)
    base = client.chat.completions.create(model="base", messages=messages, max_tokens=8)
    assert goats.fieldkit["route"] is None
    assert goats.fieldkit["packet"] == "goats"
    assert goats.choices[0].message.content == reference(running, QUESTION, "goats", 8)
    assert base.choices[0].message.content == reference(running, QUESTION, None, 8)
    assert goats.choices[0].message.content != base.choices[0].message.content


def test_streaming_gives_the_same_answer_in_pieces(running: RunningAgent) -> None:
    client = client_for(running)
    messages = [{"role": "user", "content": COVERED}]  # from the notes: the adapter writes
    raw = {"fieldkit": {"clean": False}}  # as `ask --raw`: every token as it comes
    chunks = list(
        client.chat.completions.create(
            model="pumps", messages=messages, max_tokens=10, stream=True, extra_body=raw
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == reference(running, COVERED, "pumps", 10, clean=False)
    assert len([c for c in chunks if c.choices[0].delta.content]) > 1
    assert chunks[0].fieldkit["packet"] == "pumps"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].fieldkit["swap_ms"] >= 0
    assert chunks[-1].usage.completion_tokens == 10


@pytest.mark.parametrize(
    ("model", "question", "said"),
    [
        ("auto", "How do I cook rice for six people?", "No packet answers this"),  # abstained
        ("pumps", "What is the offside rule in football?", "The pumps packet has nothing"),
    ],
)
def test_a_client_that_shows_only_the_content_still_reads_the_gap_or_caution(
    running: RunningAgent, model: str, question: str, said: str
) -> None:
    client = client_for(running)
    messages = [{"role": "user", "content": question}]
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=6)
    notice = whole.fieldkit["caution"] or whole.fieldkit["gap"]
    assert notice.startswith(said)
    content = whole.choices[0].message.content
    assert content == f"{notice}\n{whole.fieldkit['answer']['answer']}"
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=6, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.content == f"{notice}\n"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == content


def test_a_code_the_notes_do_not_list_is_answered_without_generating(
    start_agent: StartAgent, make_home, tiny_model_dir, make_adapter
) -> None:
    """E09 where the notes list E07 and E12: the agent, too, says so and generates nothing
    (fieldkit.generating.astream), streamed or not."""
    from tests.test_answering import CODE_NOTES

    home = make_home("codes")
    add_packet(home, tiny_model_dir, make_adapter(1), "pumps", PUMP_QUESTIONS, CODE_NOTES)
    running = start_agent(home)
    client = client_for(running)
    messages = [{"role": "user", "content": "My AV-750 shows E09, what does it mean?"}]
    whole = client.chat.completions.create(model="pumps", messages=messages, max_tokens=6)
    assert whole.fieldkit["gap"].startswith("The pumps packet has nothing on E09: its notes name")
    said = whole.fieldkit["answer"]
    assert said["answer"].startswith("No answer is generated: the packet holds no record of E09")
    assert said["generated"] is False
    assert whole.usage.completion_tokens == 0
    stream = client.chat.completions.create(
        model="pumps", messages=messages, max_tokens=6, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == whole.choices[0].message.content
    assert not running.agent._adapters  # no weights were read for an answer nothing wrote


def test_a_question_of_two_asks_is_answered_in_two_parts_streamed_or_not(
    start_agent: StartAgent, make_home, tiny_model_dir, make_adapter
) -> None:
    """The agent answers a question of two asks as `ask` does (fieldkit.generating): both
    records read, "[1] ..." then "[2] ...", the stream the same as the whole reply."""
    from fieldkit.assets import assets_dir
    from fieldkit.training.quality import domain_notes
    from tests.test_two_parts import OTHER_ASK, TWO_ASKS

    home = make_home("hens")
    notes = domain_notes(assets_dir() / "demo", "poultry")
    add_packet(home, tiny_model_dir, make_adapter(1), "hens", PUMP_QUESTIONS, notes)
    client = client_for(start_agent(home))
    messages = [{"role": "user", "content": TWO_ASKS}]
    whole = client.chat.completions.create(model="hens", messages=messages, max_tokens=6)
    said = whole.fieldkit["answer"]
    assert said["other_ask"] == OTHER_ASK
    assert [s["read"] for s in said["sources"]] == [True, True]
    assert whole.usage.completion_tokens <= 6  # the two parts share max_tokens
    content = whole.choices[0].message.content
    assert content.startswith("[1] ")
    assert "\n\n[2] " in content
    stream = client.chat.completions.create(
        model="hens", messages=messages, max_tokens=6, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == content


def test_stop_strings_and_temperature_are_honoured(running: RunningAgent) -> None:
    client = client_for(running)
    messages = [{"role": "user", "content": QUESTION}]
    full = reference(running, QUESTION, None, 12)
    stop = full[3:5]
    reply = client.chat.completions.create(
        model="base", messages=messages, max_tokens=12, stop=stop
    )
    assert reply.choices[0].message.content == full[: full.index(stop)]
    assert reply.choices[0].finish_reason == "stop"
    warm = client.chat.completions.create(
        model="base", messages=messages, max_tokens=4, temperature=1.5
    )
    assert warm.usage.completion_tokens <= 4


def test_an_unknown_model_is_404_with_a_sentence(running: RunningAgent) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client_for(running).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": QUESTION}]
        )
    assert "No packet named 'nope'" in caught.value.message
    assert caught.value.status_code == 404


def test_bad_bodies_are_400_naming_the_field(running: RunningAgent) -> None:
    client = client_for(running)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": QUESTION}], temperature=5
        )
    assert "temperature must be a number from 0 to 2" in caught.value.message
    with pytest.raises(openai.BadRequestError, match="messages must include a user message"):
        client.chat.completions.create(model="base", messages=[{"role": "system", "content": "x"}])
    conn = http.client.HTTPConnection(running.info.host, running.info.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=b"{not json", headers=JSON)
    response = conn.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["error"]["message"] == "The request body is not valid JSON."
    conn.close()


def post(running: RunningAgent, body: bytes) -> tuple[int, str, bytes]:
    """POST `body` to /v1/chat/completions; return the status, content type and body."""
    conn = http.client.HTTPConnection(running.info.host, running.info.port, timeout=60)
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers=JSON)
        response = conn.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        conn.close()


NOT_UNICODE = "The request holds text that is not valid Unicode."


@pytest.mark.parametrize(
    ("body", "sentence"),
    [
        (rb'{"messages":[{"role":"user","content":"\ud800 grain"}],"max_tokens":4}', NOT_UNICODE),
        (rb'{"messages":[{"role":"user","content":"grain"}],"stop":["\udfff"]}', NOT_UNICODE),
        (rb'{"messages":[{"role":"user","content":"grain"}],"\udc80":1}', NOT_UNICODE),
        (
            b'{"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "The request body is not valid JSON.",
        ),
        (  # Python's parser takes NaN and Infinity; JSON has neither
            b'{"messages":[{"role":"user","content":"grain"}],"top_p":Infinity}',
            "The request body is not valid JSON.",
        ),
        (
            b'{"messages":[{"role":"user","content":"grain"}],"stop":[""]}',
            "stop strings must not be empty.",
        ),
    ],
    ids=["lone-surrogate", "in-stop", "in-a-key", "deep-nesting", "infinity", "empty-stop"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bodies_json_takes_but_text_cannot_hold_are_400(
    running: RunningAgent, body: bytes, sentence: str, stream: bool
) -> None:
    if stream:
        body = b'{"stream":true,' + body[1:]
    status, kind, raw = post(running, body)
    assert (status, kind) == (400, "application/json"), raw[:300]
    assert json.loads(raw)["error"]["message"] == sentence
    assert running.agent.stats.served == running.agent.stats.failed == 0


def test_limits_on_body_prompt_and_queue(start_agent: StartAgent, packet_home) -> None:  # noqa: ANN001
    running = start_agent(
        packet_home, limits=Limits(max_body_bytes=4000, max_prompt_chars=500, max_queue=1)
    )
    client = client_for(running)
    with pytest.raises(openai.APIStatusError) as too_big:
        client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": "x" * 5000}]
        )
    assert too_big.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="at most 500"):
        client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": "x" * 600}]
        )
    # One request generating holds the only place in the queue: a second is told to retry.
    stream, _ = endless_stream(client, max_tokens=3000)
    with pytest.raises(openai.APIStatusError) as busy:
        client.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}])
    assert busy.value.status_code == 503
    assert "already waiting" in busy.value.message
    stream.close()


def test_listening_beyond_loopback_needs_a_token(start_agent: StartAgent, packet_home) -> None:  # noqa: ANN001
    with pytest.raises(ServerError, match="needs a token"):
        start_agent(packet_home, host="0.0.0.0")
    for blank in ("", "  "):  # `--token ""` is no token: it opened the port to anyone
        with pytest.raises(ServerError, match="The token given is empty"):
            start_agent(packet_home, host="0.0.0.0", token=blank)
    running = start_agent(packet_home, host="0.0.0.0", token="s3cret-token")
    assert running.info.token_required
    url = f"http://127.0.0.1:{running.info.port}/v1"
    wrong = openai.OpenAI(base_url=url, api_key="guess", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="not this server's token"):
        wrong.models.list()
    right = openai.OpenAI(base_url=url, api_key="s3cret-token", max_retries=0)
    assert "pumps" in [m.id for m in right.models.list().data]


def test_interleaved_requests_never_share_an_adapter(running: RunningAgent) -> None:
    questions = {name: f"Tell me about {name} please." for name in ("pumps", "goats", "base")}
    expected = {
        name: reference(running, q, None if name == "base" else name, 12)
        for name, q in questions.items()
    }
    assert len(set(expected.values())) == 3
    got: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def ask(name: str, stream: bool) -> None:
        try:
            client = client_for(running)
            messages = [{"role": "user", "content": questions[name]}]
            for _ in range(3):
                if stream:
                    parts = client.chat.completions.create(
                        model=name, messages=messages, max_tokens=12, stream=True
                    )
                    got.append((name, "".join(c.choices[0].delta.content or "" for c in parts)))
                else:
                    reply = client.chat.completions.create(
                        model=name, messages=messages, max_tokens=12
                    )
                    got.append((name, reply.choices[0].message.content))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=ask, args=(name, stream))
        for name in expected
        for stream in (False, True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(got) == 18
    assert all(text == expected[name] for name, text in got)


def test_a_client_that_hangs_up_cancels_its_generation(running: RunningAgent) -> None:
    client = client_for(running)
    before = running.agent.stats.cancelled
    stream, _ = endless_stream(client)
    stream.close()
    # The next request is served as soon as the cancelled one stops, not after 4000 tokens.
    reply = client.chat.completions.create(
        model="base", messages=[{"role": "user", "content": QUESTION}], max_tokens=2
    )
    assert reply.usage.completion_tokens == 2
    assert running.agent.stats.cancelled == before + 1
    deadline = time.monotonic() + 30  # the reply can reach us before its request is counted out
    while running.agent.waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.agent.waiting == 0


def test_a_blocked_authors_packet_is_neither_listed_nor_used(
    start_agent: StartAgent,
    packet_home,  # noqa: ANN001
    make_home,  # noqa: ANN001
    tiny_model_dir,  # noqa: ANN001
    make_adapter,  # noqa: ANN001
) -> None:
    wells = [f"How deep must the well {i} be?" for i in range(12)]
    other = make_home("other-author")
    add_packet(other, tiny_model_dir, make_adapter(3), "wells", wells)
    source = Services.build(other.root, tiny_model_dir)
    target = Services.build(packet_home.root, tiny_model_dir)
    try:
        record = source.library.get("wells")
        target.library.add(
            record.manifest, record.signature, source.library.read_weights(record), source="file"
        )
        target.library.set_trust(record.author_id, "blocked")
    finally:
        source.close()
        target.close()
    running = start_agent(packet_home)
    client = client_for(running)
    assert "wells" not in [m.id for m in client.models.list().data]
    with pytest.raises(openai.PermissionDeniedError, match="blocked author") as denied:
        client.chat.completions.create(model="wells", messages=[{"role": "user", "content": "x"}])
    assert denied.value.message.endswith('Name another model, or "base".')  # not a CLI flag
    reply = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": wells[2]}], max_tokens=4
    )
    assert reply.fieldkit["route"]["route"] != "wells"  # the router withholds it, and says so
    assert reply.fieldkit["packet"] != "wells"
    assert (
        "not used: the packet 'wells' is by a blocked author" in reply.fieldkit["route"]["reason"]
    )
    library = {p["name"]: p for p in find_agent(packet_home).get("/v1/library")["packets"]}
    assert library["wells"]["usable"] is False
