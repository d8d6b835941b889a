"""Hypothesis fuzzing of the decoder: only ProtocolError, never a crash, never a bad packet."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fieldkit.errors import ProtocolError
from fieldkit.gossip.framing import HEADER
from fieldkit.gossip.protocol import NEED_DATA, Closed, GossipConnection
from fieldkit.gossip.session import run_session
from fieldkit.gossip.summary import SyncOptions
from fieldkit.home import Home
from fieldkit.store.identity import Identity, device_id_for
from fieldkit.store.library import Library
from fieldkit.testing.memory_link import memory_pair
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, exemplars_for, random_adapter
from tests.gossip.test_protocol import NONCE_A, core_for, handshaken

FUZZ = settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
STRUCTURED = settings(FUZZ, max_examples=500)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=70),
    st.binary(max_size=80),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=8), scalars, max_size=4),
)
messages = st.tuples(st.integers(0, 12), st.lists(values, max_size=6)).map(lambda t: [t[0], *t[1]])


def frame(obj) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def drain(core: GossipConnection, data: bytes) -> None:
    """Feed `data`; every outcome but an event or ProtocolError fails the test."""
    core.receive_data(data)
    core.receive_data(b"")
    try:
        while (event := core.next_event()) is not NEED_DATA:
            if isinstance(event, Closed):
                break
    except ProtocolError:
        pass


@pytest.fixture(scope="module")
def ids(tmp_path_factory) -> tuple[Identity, Identity]:
    root = tmp_path_factory.mktemp("ids")
    return Identity.load_or_create(Home(root / "a")), Identity.load_or_create(Home(root / "b"))


@FUZZ
@given(data=st.binary(max_size=300))
def test_raw_bytes_into_a_fresh_connection(ids, data):
    drain(core_for(ids[1]), data)


@STRUCTURED
@given(batch=st.lists(messages, min_size=1, max_size=3))
def test_well_framed_random_messages_into_a_fresh_connection(ids, batch):
    drain(core_for(ids[1]), b"".join(frame(m) for m in batch))


@STRUCTURED
@given(batch=st.lists(messages, min_size=1, max_size=3), raw=st.binary(max_size=40))
def test_random_messages_after_the_handshake(ids, batch, raw):
    core, _ = handshaken(ids)
    drain(core, b"".join(frame(m) for m in batch) + raw)


# --- whole sessions: a recorded peer transcript, mutated, into a real library ------------


class ReplayedPeer:
    """A ByteStream that plays back recorded bytes and ignores what it is sent."""

    peer_label = "replay"

    def __init__(self, data: bytes) -> None:
        self._pieces = [data[i : i + 997] for i in range(0, len(data), 997)]

    async def send(self, data: bytes) -> None:
        return None

    async def receive(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A sender's side of a real session, and a receiver library that trusts it."""
    root: Path = tmp_path_factory.mktemp("replay")
    a_home, b_home = Home(root / "a").ensure(), Home(root / "b").ensure()
    a_id, b_id = Identity.load_or_create(a_home), Identity.load_or_create(b_home)
    a_lib, b_lib = Library.open(a_home, a_id), Library.open(b_home, b_id)
    record = a_lib.add_local(
        random_adapter(seed=4, size_scale=2),
        name="pumps",
        domain="pumps",
        description="",
        exemplars=exemplars_for("pumps"),
        base_model_id="t",
        base_fingerprint=TEST_BASE_FINGERPRINT,
    )
    b_lib.set_trust(a_id.device_id, "trusted")

    async def record_session() -> bytes:
        link_a, link_b = memory_pair()
        opts = SyncOptions(idle_timeout=2)
        await asyncio.gather(
            run_session(link_a, a_id, a_lib, opts, nonce=NONCE_A),
            run_session(link_b, b_id, b_lib, opts, nonce=b"\x07" * 32),
        )
        return link_a.delivered

    transcript = asyncio.run(record_session())
    assert b_lib.has(record.packet_id)
    yield transcript, b_id, b_lib, record.packet_id
    a_lib.close()
    b_lib.close()


def reset(library: Library, packet_id: str) -> None:
    if library.has(packet_id):
        library.remove(packet_id)
    library.clear_transfer(packet_id)
    library.part_path(packet_id).unlink(missing_ok=True)


@settings(max_examples=150, deadline=None)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), max_size=3),
    cut=st.integers(0, 10**9),
)
def test_mutated_transcripts_never_leave_a_bad_packet(recorded, flips, cut):
    transcript, identity, library, pid = recorded
    reset(library, pid)
    data = bytearray(transcript)
    for position, mask in flips:
        data[position % len(data)] ^= mask
    data = data[: len(data) - cut % 64] if cut % 3 == 0 else data
    summary = asyncio.run(
        run_session(
            ReplayedPeer(bytes(data)),
            identity,
            library,
            SyncOptions(idle_timeout=2),
            nonce=b"\x07" * 32,
        )
    )
    for record in library.list_packets():
        _, problem = library.verify(record.packet_id)
        assert problem is None
    if not flips and cut % 3:
        assert summary.ok, summary.error
        assert library.has(pid)
    reset(library, pid)


def test_unmutated_transcript_is_accepted(recorded):
    transcript, identity, library, pid = recorded
    reset(library, pid)
    summary = asyncio.run(
        run_session(
            ReplayedPeer(transcript),
            identity,
            library,
            SyncOptions(idle_timeout=2),
            nonce=b"\x07" * 32,
        )
    )
    assert summary.ok, summary.error
    assert library.has(pid)
    reset(library, pid)


def test_device_id_rule_is_the_library_one():
    assert device_id_for(b"\0" * 32) == device_id_for(b"\0" * 32)
