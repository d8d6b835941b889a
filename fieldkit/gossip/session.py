"""One gossip session: the sans-IO core driven over any ByteStream against a Library.

`run_session` is transport-agnostic: TCP, the in-memory pair and BLE all hand it a
ByteStream. It reads on one task and serves the peer's wants on another, so both directions
flow at once; every frame goes out under one lock, whole and in the order the core made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from fieldkit.errors import FieldkitError, PacketRemoved, PeerRefused, ProtocolError, TransportError
from fieldkit.formats import shown_text
from fieldkit.gossip.chunks import AdaptiveCompression, ChunkEncoder
from fieldkit.gossip.messages import (
    DECLINED_BECAUSE,
    Abort,
    Bye,
    Cancel,
    Chunk,
    Decline,
    Hello,
    Inventory,
    InventoryItem,
    Message,
    PacketEnd,
    PacketStart,
    Ping,
    Proof,
    Want,
)
from fieldkit.gossip.pairing import NONCE_SIZE, mark_nonce, proof_payload
from fieldkit.gossip.protocol import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Closed,
    GossipConnection,
    PeerVerified,
    State,
    chunk_count,
    chunk_length,
    missing_chunks,
    only_pings,
)
from fieldkit.gossip.receiving import Receiver, receive_policy
from fieldkit.gossip.stream import ByteStream, callback_address
from fieldkit.gossip.summary import (
    ConfirmCallback,
    PacketReport,
    PeerCallback,
    ProgressCallback,
    ProgressUpdate,
    SyncOptions,
    SyncSummary,
    report_progress,
)
from fieldkit.store.identity import Identity, device_id_for
from fieldkit.store.library import Library

__all__ = ["ProgressUpdate", "receive_policy", "run_session"]  # the names callers import here

GONE = "the packet is no longer in the library"  # a wanted packet removed before it was sent


async def run_session(
    stream: ByteStream,
    identity: Identity,
    library: Library,
    options: SyncOptions | None = None,
    progress: ProgressCallback | None = None,
    confirm: ConfirmCallback | None = None,
    claims: set[str] | None = None,
    nonce: bytes | None = None,
    on_peer: PeerCallback | None = None,
) -> SyncSummary:
    """Run one two-way sync with the peer at the other end of `stream`; return its summary.

    Never raises for what the peer or the link did: the summary's `error` says why the
    session ended early. `claims` is shared by concurrent sessions of one listener so that
    two peers never write the same part file. `nonce` (32 bytes) defaults to a fresh random one.
    `on_peer` is told once the peer has proved who it is (summary.PeerCallback).
    """
    nonce = nonce or os.urandom(NONCE_SIZE)
    options = options or SyncOptions()
    claims = claims if claims is not None else set()
    return await _Session(
        stream, identity, library, options, progress, confirm, nonce, claims, on_peer
    ).run()


class _Session:
    def __init__(
        self,
        stream: ByteStream,
        identity: Identity,
        library: Library,
        options: SyncOptions,
        progress: ProgressCallback | None,
        confirm: ConfirmCallback | None,
        nonce: bytes,
        claims: set[str],
        on_peer: PeerCallback | None = None,
    ) -> None:
        self.stream = stream
        self.identity = identity
        self.library = library
        self.options = options
        self.progress = progress
        self.on_peer = on_peer
        hello = Hello(
            PROTOCOL_VERSION,
            identity.device_id,
            identity.current_name(),
            identity.public_key,
            mark_nonce(nonce, options.protocol_version),
            options.limits.max_chunk,
        )
        self.compression = AdaptiveCompression()
        self.encoder = ChunkEncoder(options.compression_level, options.shuffle, self.compression)
        self.core = GossipConnection(hello, device_id_for, options.limits, self.encoder)
        self.summary = SyncSummary(peer_label=stream.peer_label)
        self.send_lock = asyncio.Lock()
        self.wants: asyncio.Queue[Want | None] = asyncio.Queue()
        self.receiver = Receiver(
            library, options, self.summary, self._send, claims, progress, confirm
        )
        # progress (anything but a Ping, either way); anything heard; anything sent
        self.last_activity = self.last_heard = self.last_sent = time.monotonic()

    # --- the loop ----------------------------------------------------------------------

    async def run(self) -> SyncSummary:
        server = asyncio.create_task(self._serve_wants())
        keepalive = asyncio.create_task(self._keepalive())
        try:
            await self._send(self.core.our_hello)
            async with asyncio.timeout(self.options.handshake_timeout):
                await self._handshake()
            await self._read_until_finished()
        except TimeoutError:
            await self._fail(TransportError(self._silent(self.options.handshake_timeout)))
        except ProtocolError as exc:
            await self._fail(exc, abort=str(exc))
        except PeerRefused as exc:
            await self._fail(exc, abort="It refuses a session with this device.")
        except FieldkitError as exc:
            await self._fail(exc)
        finally:
            self.wants.put_nowait(None)
            keepalive.cancel()
            server.cancel()
            cancelled = False
            try:  # wait() never raises the server's own error or cancellation...
                await asyncio.wait([server, keepalive])
            except asyncio.CancelledError:  # ...so this is ours: clean up, then re-raise it
                cancelled = True
            if server.done() and not server.cancelled():
                server.exception()  # retrieved: a failed server already ended the session
            self.receiver.close()
            with contextlib.suppress(Exception):
                await self.stream.close()
            if cancelled:
                raise asyncio.CancelledError
        self.summary.bytes_sent = self.core.bytes_sent
        self.summary.bytes_received = self.core.bytes_received
        self.summary.inventory_bytes_sent = self.core.inventory_bytes_sent
        self.summary.protocol_version = self.core.version
        return self.summary

    async def _fail(self, exc: FieldkitError, abort: str | None = None) -> None:
        self.summary.error = str(exc)
        for report in self.summary.packets:
            if report.status == "pending":
                report.status, report.reason = "failed", "the session ended early"
        self.library.log_event("sync_failed", peer_id=self.summary.peer_id, reason=str(exc))
        if abort is not None and self.core.state is not State.CLOSED:
            with contextlib.suppress(Exception):  # not wait_for: it can drop a cancel
                async with asyncio.timeout(5):
                    await self._send(Abort(abort[:500]))

    async def _handshake(self) -> None:
        # stops right after the peer is verified: what follows (perhaps a person asked to
        # confirm the peer) is not bound by the handshake timeout
        while self.core.peer is None:
            await self._step(lambda: self.core.peer is not None)

    async def _read_until_finished(self) -> None:
        while not self.core.finished:
            await self._step(lambda: self.core.finished)

    async def _step(self, done: Callable[[], bool]) -> None:
        """Handle buffered events until `done()`; if none are left, wait for more bytes."""
        while True:
            event = self.core.next_event()
            if event is NEED_DATA:
                await self._flush()
                break
            await self._handle(event)
            await self._flush()
            if done():
                return
        data = await self._receive()
        self.core.receive_data(data)

    async def _receive(self) -> bytes:
        """Return the next bytes; time out if neither side made progress for a while
        (idle_timeout), or, from a peer that says it is still there (version 4: Ping),
        if nothing at all came for dead_after."""
        idle = self.options.idle_timeout
        while True:
            live = self.options.dead_after if self.core.version >= 4 else idle
            try:  # not wait_for: on Python 3.11 it drops a cancel that lands as bytes arrive
                async with asyncio.timeout(min(idle, live)):
                    data = await self.stream.receive()
            except TimeoutError:
                now = time.monotonic()
                if live < idle and now - self.last_heard >= live:
                    raise TransportError(self._gone(live)) from None
                if now - self.last_activity < idle:
                    continue
                raise TransportError(self._silent(idle)) from None
            self.last_heard = time.monotonic()
            if not only_pings(data):
                self.last_activity = self.last_heard
            return data

    async def _keepalive(self) -> None:
        """Send Ping whenever this side has sent nothing for `keepalive` seconds (version
        4), so the peer can tell a slow session from a dead link; a failed send ends it
        quietly (the reader hears why)."""
        every = self.options.keepalive
        while True:
            quiet = time.monotonic() - self.last_sent
            if quiet < every:
                await asyncio.sleep(every - quiet)
            elif self.core.peer_hello is not None and self.core.version < 4:
                return  # an older peer: no Ping
            elif not self.core.may_ping:  # not proved yet, or both said Bye
                await asyncio.sleep(every)
            else:
                async with self.send_lock:  # checked again with nothing else sending
                    if not self.core.may_ping:
                        continue
                    try:
                        await self.stream.send(self.core.send(Ping()))
                    except Exception:
                        return
                self.last_sent = time.monotonic()  # no progress: last_activity stays

    def _gone(self, seconds: float) -> str:
        return (
            f"The link to {self.stream.peer_label} went silent: nothing came for {seconds:g} "
            "seconds, not even a keepalive."
        )

    def _silent(self, seconds: float) -> str:
        """Say that the peer went quiet; one that never said a word is most likely not a
        fieldkit device (a web server waits for a request line: nothing comes back)."""
        label = self.stream.peer_label
        span = f"{seconds:g} second{'' if seconds == 1 else 's'}"
        if not self.core.bytes_received:
            return (
                f"{label} sent nothing in {span}: a fieldkit device greets at once, so this "
                "is most likely not one (is it `fieldkit sync --listen`?)."
            )
        if self.core.peer is None:
            return f"The peer {label} did not finish the handshake in {span}."
        return f"The peer {label} sent nothing for {span}."

    async def _send(self, message: Message, unless_cancelled: str = "") -> int:
        """Send one message; return its wire size (0 if `unless_cancelled` was cancelled)."""
        async with self.send_lock:
            if unless_cancelled and self.core.is_cancelled(unless_cancelled):
                return 0
            data = self.core.send(message)
            await self.stream.send(data)
        self.last_activity = self.last_sent = time.monotonic()
        return len(data)

    async def _flush(self) -> None:
        """Send what the core answered on its own (version 2 inventory summaries); the lock
        is taken only then, so a reader never waits behind a slow chunk for nothing."""
        if not self.core.has_data_to_send:
            return
        async with self.send_lock:
            data = self.core.data_to_send()
            if data:
                await self.stream.send(data)
                self.last_sent = time.monotonic()

    async def _send_chunk(self, chunk: Chunk) -> int:
        """Send one chunk like `_send`, and tell the compression policy what it cost."""
        async with self.send_lock:
            if self.core.is_cancelled(chunk.packet_id):
                return 0
            # CPU time, so that a preempted encode is not taken for a slow one; read only
            # around chunks that get compressed (the clock costs ~10 us on some machines)
            timed = self.encoder.next_is_compressed(chunk.data)
            cpu = time.thread_time() if timed else 0.0
            data = self.core.send(chunk)
            cpu = time.thread_time() - cpu if timed else 0.0
            start = time.perf_counter()
            await self.stream.send(data)
            sent = time.perf_counter() - start
        self.compression.observe(len(chunk.data), len(data), cpu, sent, self.encoder.tried)
        self.last_activity = self.last_sent = time.monotonic()
        return len(data)

    # --- events ------------------------------------------------------------------------

    async def _handle(self, event: Any) -> None:
        if isinstance(event, Hello):
            payload = proof_payload(
                self.identity.public_key, self.core.our_hello.nonce, event.public_key, event.nonce
            )
            await self._send(Proof(self.identity.sign(payload)))
        elif isinstance(event, PeerVerified):
            await self._on_peer(event)
        elif isinstance(event, Inventory):
            await self.receiver.on_inventory(event, declines=self.core.version >= 3)
        elif isinstance(event, Decline):
            self._on_decline(event)
        elif isinstance(event, Want):
            self.wants.put_nowait(event)
        elif isinstance(event, PacketStart):
            await self.receiver.on_start(event)
        elif isinstance(event, Chunk):
            self.receiver.on_chunk(event)
        elif isinstance(event, PacketEnd):
            await self.receiver.on_end(event)
        elif isinstance(event, Cancel):
            await self._on_cancel(event)
        elif isinstance(event, Abort):
            raise PeerRefused(f"The peer ended the session: {shown_text(event.reason)}")
        elif isinstance(event, Closed) and not event.clean:
            raise TransportError(
                f"The link to {self.stream.peer_label} closed before the sync finished."
            )
        await self._maybe_bye()

    async def _on_peer(self, peer: PeerVerified) -> None:
        self.summary.peer_id, self.summary.peer_name, self.summary.sas = (
            peer.device_id,
            peer.name,
            peer.sas,
        )
        known = self.library.get_peer(peer.device_id)
        if known is not None and known.trust == "blocked":
            self.summary.peer_trust = "blocked"
            raise PeerRefused(f"Peer {peer.device_id} is blocked; the session was refused.")
        address = callback_address(self.stream)  # "" keeps the address known before
        record = self.library.upsert_peer(peer.public_key, peer.name, address)
        self.summary.peer_trust = record.trust
        self.library.log_event("sync_started", peer_id=peer.device_id, trust=record.trust)
        if self.on_peer is not None:
            self.on_peer(self.summary)
        items = tuple(
            InventoryItem(
                r.packet_id,
                r.sha256,
                r.size,
                r.author_id,
                r.base_fingerprint,
                r.name[:200],
                int(r.manifest.get("created", 0)),
            )
            for r in self.library.list_packets()
            if r.verified  # one that failed verification (damaged, weights gone) stays here
        )
        await self._send(Inventory(items))

    async def _on_cancel(self, cancel: Cancel) -> None:
        if self.receiver.on_cancel(cancel):
            return
        for sent in self.summary.packets:
            if sent.packet_id == cancel.packet_id and sent.direction == "sent":
                sent.status, sent.reason = "refused", f"the peer refused it: {cancel.reason}"

    def _on_decline(self, decline: Decline) -> None:
        """Report an offered packet the peer will not ask for, in this side's words."""
        record = self.library.find(decline.packet_id)
        name, sha256, size = (record.name, record.sha256, record.size) if record else ("?", "", 0)
        because = DECLINED_BECAUSE.get(decline.reason, f"the peer declined it ({decline.reason})")
        report = PacketReport(decline.packet_id, name, sha256, "sent", "refused", size, because)
        self.summary.packets.append(report)

    async def _maybe_bye(self) -> None:
        if self.receiver.wants_sent and not self.core.pending_wants() and not self.core.said_bye:
            await self._send(Bye())

    # --- serving the peer's wants ------------------------------------------------------

    async def _serve_wants(self) -> None:
        while True:
            want = await self.wants.get()
            if want is None:
                return
            await self._serve(want)

    async def _serve(self, want: Want) -> None:
        record = self.library.find(want.packet_id)
        if record is None:
            await self._send(Cancel(want.packet_id, GONE))
            return
        report = PacketReport(record.packet_id, record.name, record.sha256, "sent", "pending")
        report.size = record.size
        self.summary.packets.append(report)
        manifest = record.manifest
        chunk_size, size = manifest["chunk_size"], manifest["weights_size"]
        peer_hello = self.core.peer_hello
        if peer_hello is not None and chunk_size > peer_hello.max_chunk:
            report.status, report.reason = "refused", "the peer's chunk limit is too small"
            await self._send(Cancel(record.packet_id, "its chunks exceed your chunk limit"))
            return
        try:
            data = self.library.read_weights(record)
        except PacketRemoved:  # removed meanwhile: no failure
            self.summary.packets.remove(report)
            await self._send(Cancel(record.packet_id, GONE))
            return
        except FieldkitError as exc:
            report.status, report.reason = "failed", str(exc)
            await self._send(Cancel(record.packet_id, "the packet's weights are unreadable"))
            return
        todo = missing_chunks(want.have, chunk_count(size, chunk_size))
        report.resumed_from = size - sum(chunk_length(size, chunk_size, i) for i in todo)
        pid = record.packet_id
        report.wire_bytes += await self._send(PacketStart(pid, manifest, record.signature), pid)
        done = report.resumed_from
        report_progress(self.progress, report, done)  # first report: what the peer already held
        for index in todo:
            piece = data[index * chunk_size : index * chunk_size + chunk_size]
            sent = await self._send_chunk(Chunk(pid, index, piece))
            if not sent:
                break
            report.wire_bytes += sent
            done += len(piece)
            report_progress(self.progress, report, done)
        # The sender ends every wanted packet, even one the receiver cancelled.
        report.wire_bytes += await self._send(PacketEnd(pid))
        if report.status == "pending":
            report.status = "ok"
