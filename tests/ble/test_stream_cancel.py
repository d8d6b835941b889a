"""BleByteStream.close keeps its caller's cancellation, on a simulated stack.

bumble's writes return at once, so a close() on bumble never waits long for the pump to
stop. BlueZ and CoreBluetooth (not runnable here) finish a write once it has started,
which holds close() there long enough for a cancellation to arrive. This stack does that.
"""

from __future__ import annotations

import asyncio

import pytest

from fieldkit.gossip.ble.stream import BleByteStream


class SimulatedStack:
    """The calls a transport hands BleByteStream: each write takes `air` seconds and, once
    started, finishes even when its writer is cancelled."""

    def __init__(self, air: float = 0.3) -> None:
        self.air = air
        self.unwinding = asyncio.Event()  # a cancelled write is finishing
        self.disconnected = False

    async def write(self, value: bytes) -> None:
        in_flight = asyncio.ensure_future(asyncio.sleep(self.air))
        try:
            await asyncio.shield(in_flight)
        except asyncio.CancelledError:
            self.unwinding.set()
            await asyncio.shield(in_flight)
            raise

    async def disconnect(self) -> None:
        self.disconnected = True


async def test_a_cancel_that_arrives_while_close_waits_for_a_simulated_stack_write_is_kept():
    stack = SimulatedStack()
    stream = BleByteStream(
        write=stack.write, mtu=lambda: 247, disconnect=stack.disconnect, peer_label="peer"
    )
    await asyncio.sleep(0)  # the stream starts writing its HELLO
    stream.connection_lost("supervision timeout")  # the link drops with that write in flight
    closing = asyncio.create_task(stream.close())
    await asyncio.wait_for(stack.unwinding.wait(), 5)  # close stopped the writer and waits
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(closing), 5)
    assert closing.cancelled()  # ended by the cancellation, not "normally"
    assert stack.disconnected
