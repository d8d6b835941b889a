"""The sans-IO BLE link: frames, credits, advertisement, role rule (no radio, no asyncio)."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldkit.errors import ProtocolError
from fieldkit.gossip.ble.link import (
    CREDIT,
    DATA,
    HELLO,
    Advertisement,
    BleLink,
    Role,
    choose_role,
    parse_ad,
    scan_response,
    short_id,
    value_size,
)


def shuttle(a: BleLink, b: BleLink, max_frames: int | None = None) -> int:
    """Move frames both ways until quiet; return how many frames moved."""
    moved = 0
    while True:
        frames_ab, frames_ba = a.values_to_send(), b.values_to_send()
        if not frames_ab and not frames_ba:
            return moved
        for frame in frames_ab:
            assert len(frame) <= a.value_size
            b.receive_value(frame)
        for frame in frames_ba:
            assert len(frame) <= b.value_size
            a.receive_value(frame)
        moved += len(frames_ab) + len(frames_ba)


def test_value_size_caps_at_512_and_rejects_tiny_mtu() -> None:
    assert value_size(23) == 20
    assert value_size(247) == 244
    assert value_size(517) == 512
    assert value_size(1024) == 512
    with pytest.raises(ValueError, match="at least 23"):
        value_size(22)


@pytest.mark.parametrize("mtu", [23, 247, 517])
def test_bytes_cross_both_ways_in_order(mtu: int) -> None:
    a, b = BleLink(mtu, window=8), BleLink(mtu, window=8)
    sent_ab, sent_ba = os.urandom(5000), os.urandom(3000)
    a.send(sent_ab)
    b.send(sent_ba)
    got_a, got_b = bytearray(), bytearray()
    while len(got_b) < len(sent_ab) or len(got_a) < len(sent_ba):
        assert shuttle(a, b) or b.readable or a.readable, "stalled"
        got_b += b.read()
        got_a += a.read()
    assert bytes(got_b) == sent_ab
    assert bytes(got_a) == sent_ba


def test_sender_stops_at_the_receivers_window_until_it_reads() -> None:
    a, b = BleLink(23, window=4), BleLink(23, window=4)
    shuttle(a, b)  # greetings
    a.send(b"x" * 19 * 10)  # ten frames' worth
    frames = a.values_to_send()
    assert [f[0] for f in frames] == [DATA] * 4
    assert a.values_to_send() == []  # no credits left
    for frame in frames:
        b.receive_value(frame)
    assert b.read() == b"x" * 19 * 4
    credit = b.values_to_send()
    assert credit == [bytes([CREDIT, 4, 0])]
    a.receive_value(credit[0])
    assert len(a.values_to_send()) == 4


def test_frames_fit_the_smaller_side_when_one_stack_cannot_tell_its_mtu() -> None:
    peripheral = BleLink(517, window=8)  # knows nothing better than the maximum
    central = BleLink(185, window=8)
    shuttle(peripheral, central)
    assert peripheral.peer_value_size == 182
    peripheral.send(b"q" * 1000)
    assert max(len(f) for f in peripheral.values_to_send()) == 182


def test_impossible_value_size_is_refused() -> None:
    with pytest.raises(ProtocolError, match="value size"):
        BleLink().receive_value(bytes([HELLO, 1, 8, 0, 0, 4]))


def test_a_peer_that_ignores_credits_is_a_protocol_error() -> None:
    b = BleLink(23, window=2)
    b.receive_value(bytes([HELLO, 1, 2, 0, 20, 0]))
    b.receive_value(bytes([DATA]) + b"a")
    b.receive_value(bytes([DATA]) + b"b")
    with pytest.raises(ProtocolError, match="credits"):
        b.receive_value(bytes([DATA]) + b"c")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "empty"),
        (bytes([DATA]) + b"x", "before its greeting"),
        (bytes([HELLO, 9, 8, 0, 20, 0]), "version 9"),
        (bytes([HELLO, 1]), "malformed greeting"),
    ],
)
def test_bad_first_frames_are_refused(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        BleLink().receive_value(frame)


def test_unknown_frame_and_data_after_fin_are_refused() -> None:
    b = BleLink()
    b.receive_value(bytes([HELLO, 1, 8, 0, 20, 0]))
    with pytest.raises(ProtocolError, match="unknown frame type 7"):
        b.receive_value(bytes([7]))
    b.receive_value(bytes([2]))
    assert b.peer_finished
    with pytest.raises(ProtocolError, match="after closing"):
        b.receive_value(bytes([DATA]) + b"x")


def test_fin_follows_the_last_data_and_drained_reports_it() -> None:
    a, b = BleLink(23, window=2), BleLink(23, window=2)
    a.send(b"y" * 100)
    a.finish()
    with pytest.raises(ValueError, match="after finish"):
        a.send(b"more")
    got = bytearray()
    while not b.peer_finished or b.readable:
        shuttle(a, b)
        got += b.read()
    assert bytes(got) == b"y" * 100
    assert a.drained


def test_mtu_change_applies_to_frames_not_yet_built() -> None:
    a, b = BleLink(23, window=64), BleLink(23, window=64)
    a.set_mtu(247)  # before the greeting: the peer learns 244
    b.set_mtu(247)
    shuttle(a, b)
    a.send(b"z" * 1000)
    assert [len(f) for f in a.values_to_send()] == [244, 244, 244, 244, 29]


@settings(max_examples=40, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=700), min_size=1, max_size=8),
    mtu=st.sampled_from([23, 100, 247, 517]),
    window=st.integers(2, 9),
)
def test_any_writes_arrive_whole_one_frame_at_a_time(
    chunks: list[bytes], mtu: int, window: int
) -> None:
    a, b = BleLink(mtu, window=window), BleLink(mtu, window=window)
    for chunk in chunks:
        a.send(chunk)
    a.finish()
    got = bytearray()
    for _ in range(10_000):
        for frame in a.values_to_send():
            b.receive_value(frame)
            got += b.read()  # the application reads after every frame
        for frame in b.values_to_send():
            a.receive_value(frame)
        if b.peer_finished and not b.readable:
            break
    assert bytes(got) == b"".join(chunks)


def test_advertisement_round_trips_and_fits_31_bytes() -> None:
    adv = Advertisement(short_id=short_id("K7QX2MZA4BCDEF23"))
    raw = adv.encode()
    assert len(raw) <= 31
    assert Advertisement.decode(raw) == Advertisement(short_id="k7qx2mza", version=1)
    assert Advertisement.decode(raw.replace(bytes([0x21, 0x4F]), bytes([0x22, 0x4F]))) is None
    assert (
        Advertisement.from_manufacturer_data(b"\xff\xff\x01" + adv.manufacturer_payload()[1:])
        == adv
    )


def test_foreign_advertisements_are_not_fieldkit_peers() -> None:
    assert Advertisement.decode(bytes.fromhex("0201060303aafe")) is None
    assert Advertisement.decode(b"\x05") is None  # truncated


def test_scan_response_carries_the_name_and_truncates_long_ones() -> None:
    assert parse_ad(scan_response("clinic-7"))[0x09] == b"clinic-7"
    long = scan_response("a" * 40)
    assert len(long) == 31
    assert parse_ad(long)[0x08] == b"a" * 29


def test_role_rule_is_antisymmetric_and_refuses_itself() -> None:
    assert choose_role("abcdefgh23", "zzzzzzzz") is Role.CENTRAL
    assert choose_role("zzzzzzzz", "abcdefgh23") is Role.PERIPHERAL
    with pytest.raises(ValueError, match="own id"):
        choose_role("abcdefghij", "ABCDEFGHkk")


def test_short_id_is_eight_base32_characters() -> None:
    assert short_id("ABCDEF2345") == "abcdef23"
    with pytest.raises(ValueError, match="base32"):
        short_id("01890189")
    with pytest.raises(ValueError, match="shorter"):
        short_id("abc")


async def test_a_scan_cancelled_mid_command_leaves_the_controller_in_step() -> None:
    from fieldkit.gossip.ble.radio_bumble import power_on, scan
    from fieldkit.testing.virtual_radio import VirtualRadio

    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    air = VirtualRadio()
    device = air.device("aaaaaaaaaaaaaaaa", "alice")
    await power_on(device)
    for delay in (0, 0.0001, 0.001, 0.002, 0.005) * 3:
        task = asyncio.ensure_future(scan(device, 1.0))
        await asyncio.sleep(delay)  # a person leaves the Peers screen while a scan starts
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await scan(device, 0.01) == []  # the next commands get their own replies
    assert [str(ctx.get("exception") or ctx["message"]) for ctx in loop_errors] == []


async def test_a_scan_started_as_another_is_cancelled_still_sees_peers() -> None:
    from fieldkit.gossip.ble.radio_bumble import BumbleRadio, power_on
    from fieldkit.testing.virtual_radio import VirtualRadio

    air = VirtualRadio()
    alice, bob = air.device("aaaaaaaaaaaaaaaa", "alice"), air.device("bbbbbbbbbbbbbbbb", "bob")
    await power_on(alice)
    await power_on(bob)
    await BumbleRadio(bob).advertise("bbbbbbbbbbbbbbbb", "bob")
    radio = BumbleRadio(alice)
    for delay in (0, 0.001, 0.005):
        first = asyncio.ensure_future(radio.scan(2.0))
        await asyncio.sleep(delay)
        first.cancel()  # what an exclusive worker does when the screen rescans
        second = await radio.scan(1.0, stop_early="bbbb")
        assert [s.short_id[:4] for s in second] == ["bbbb"], delay
        with pytest.raises(asyncio.CancelledError):
            await first


def test_a_sighting_shows_an_advertised_name_without_its_control_characters() -> None:
    from fieldkit.gossip.ble.sightings import Sightings

    async def scan() -> Sightings:  # Sightings holds an asyncio.Event: made in a loop
        sightings = Sightings()
        sightings.add(Advertisement("abcdabcd"), "bob\x1b]0;pwned\x07", -40, "AA:BB")
        sightings.add(Advertisement("abcdabcd"), None, -30, "AA:BB")  # no name: kept
        return sightings

    [seen] = asyncio.run(scan()).strongest_first()
    assert seen.name == "bob\ufffd]0;pwned\ufffd"
    assert seen.rssi == -30
