"""Talk to a running agent of a home over its Unix socket, with the standard library.

`find_agent(home, model_dir)` returns an AgentClient when an agent of that home (serving
that base model) answers, else None. The client is the standard library's http.client
(no HTTP dependency for the CLI): JSON requests, and server-sent events read line by line;
on asyncio, `scan`, `sync` and `listen` run on the agent's radio and report as the same
calls of fieldkit/gossip/sync.py report here.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fieldkit.errors import FieldkitError, TransportError
from fieldkit.home import Home
from fieldkit.server.runtime import RuntimeInfo, ServerError, read_runtime

if TYPE_CHECKING:
    from fieldkit.gossip.ble.link import Sighting
    from fieldkit.gossip.summary import (
        ConfirmCallback,
        PeerCallback,
        ProgressCallback,
        SyncOptions,
        SyncSummary,
    )

NO_SERVER_ENV = "FIELDKIT_NO_SERVER"
# The agent's radio (fieldkit/server/radio.py), on the Unix socket only.
SCAN_PATH = "/fieldkit/scan/ble"
SYNC_PATH = "/fieldkit/sync/ble"
LISTEN_PATH = "/fieldkit/listen/ble"
CONFIRM_PATH = "/fieldkit/confirm/ble"  # a person's answer to a radio event's `confirm`


def use_agent(no_server: bool = False) -> bool:
    """True unless --no-server or FIELDKIT_NO_SERVER=1 says to do everything here."""
    return not no_server and os.environ.get(NO_SERVER_ENV, "") in ("", "0")


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a Unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class AgentClient:
    """Requests to one running agent; each call opens its own connection."""

    def __init__(self, info: RuntimeInfo, timeout: float = 600.0) -> None:
        self.info = info
        self.timeout = timeout

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        conn = _UnixConnection(self.info.socket, self.timeout)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            conn.request(method, path, body=data, headers=headers)
            return conn, conn.getresponse()
        except OSError as exc:
            conn.close()
            raise ServerError(f"The agent at {self.info.socket} did not answer: {exc}.") from exc

    def get(self, path: str) -> dict[str, Any]:
        """Return the JSON of GET `path`; FieldkitError with the agent's sentence on an error."""
        conn, response = self._send("GET", path, None)
        try:
            return _json_or_raise(response)
        finally:
            conn.close()

    def stream_chat(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST a streamed chat completion; yield each event's JSON until [DONE]."""
        conn, response = self._send("POST", "/v1/chat/completions", {**payload, "stream": True})
        try:
            if response.status != 200:
                _json_or_raise(response)
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise FieldkitError(event["error"].get("message") or "The agent failed.")
                yield event
            raise ServerError("The agent closed the stream before the answer ended.")
        except OSError as exc:
            raise ServerError(f"The agent's stream broke: {exc}.") from exc
        finally:
            conn.close()

    async def apost(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Return the JSON answer to POST `path` (on the running event loop); FieldkitError
        with the agent's sentence on an error."""
        status, pieces = await self._apost(path, payload)
        return _checked(status, b"".join([piece async for piece in pieces]))

    async def apost_lines(
        self, path: str, payload: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """POST `payload` to `path`; yield each JSON line of the streamed answer as it comes.

        Closing the iterator hangs up (the agent then ends what it was doing for us).
        """
        status, pieces = await self._apost(path, payload)
        try:
            if status != 200:
                _checked(status, b"".join([piece async for piece in pieces]))
            rest = b""
            async for piece in pieces:
                *lines, rest = (rest + piece).split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            await pieces.aclose()

    async def scan(self, seconds: float) -> list[Sighting]:
        """Return the fieldkit peers a scan on the agent's radio saw.

        Raises TransportError with the agent's sentence when the scan failed.
        """
        from fieldkit.gossip.ble.link import Sighting

        answer = await self.apost(SCAN_PATH, {"seconds": seconds})
        if "error" in answer:
            raise TransportError(answer["error"])
        return [Sighting(**s) for s in answer["sightings"]]

    async def sync(
        self,
        options: SyncOptions,
        peer: str | None = None,
        progress: ProgressCallback | None = None,
        confirm: ConfirmCallback | None = None,
        scan_seconds: float = 10.0,
        *,
        connect: bool = False,
    ) -> SyncSummary:
        """Run one BLE sync on the agent's radio as `gossip.sync.sync_ble` (or, `connect`,
        `sync_ble_peer`) runs it here; return its summary.

        Progress comes to `progress`, a new peer's code to `confirm` (its answer goes back
        to the agent). Raises TransportError with the agent's sentence when it failed.
        """
        from fieldkit.server.radio import options_to_dict

        request = {"peer": peer, "scan_seconds": scan_seconds, "connect": connect}
        summaries: list[SyncSummary] = []
        await self._radio(
            SYNC_PATH, {**request, **options_to_dict(options)}, summaries.append, progress, confirm
        )
        if not summaries:
            raise TransportError("The agent ended the Bluetooth session without a summary.")
        return summaries[0]

    async def listen(
        self,
        options: SyncOptions,
        once: bool = False,
        on_summary: Callable[[SyncSummary], None] | None = None,
        progress: ProgressCallback | None = None,
        confirm: ConfirmCallback | None = None,
        on_ready: Callable[[], None] | None = None,
        on_peer: PeerCallback | None = None,
    ) -> None:
        """Advertise and serve on the agent's radio as `gossip.sync.serve_ble` does here,
        until cancelled (or after the first authenticated session with `once`).

        Raises TransportError with the agent's sentence when the radio failed.
        """
        from fieldkit.server.radio import options_to_dict

        request = {"once": once, **options_to_dict(options)}
        await self._radio(
            LISTEN_PATH, request, on_summary or (lambda _: None), progress, confirm, on_ready,
            on_peer,
        )  # fmt: skip

    async def _radio(
        self,
        path: str,
        request: dict[str, Any],
        on_summary: Callable[[SyncSummary], None],
        progress: ProgressCallback | None,
        confirm: ConfirmCallback | None,
        on_ready: Callable[[], None] | None = None,
        on_peer: PeerCallback | None = None,
    ) -> None:
        """Relay one request's radio events (fieldkit/server/radio.py) to the callbacks."""
        from fieldkit.server.radio import progress_from_dict, summary_from_dict

        events = self.apost_lines(path, {**request, "confirm": confirm is not None})
        try:
            async for event in events:
                if "error" in event:
                    raise TransportError(event["error"])
                if "summary" in event:
                    on_summary(summary_from_dict(event["summary"]))
                elif "progress" in event and progress is not None:
                    progress(progress_from_dict(event["progress"]))
                elif "ready" in event and on_ready is not None:
                    on_ready()
                elif "peer" in event and on_peer is not None:
                    on_peer(summary_from_dict(event["peer"]))
                elif "confirm" in event and confirm is not None:
                    asked = event["confirm"]
                    accept = await confirm(asked["peer_id"], asked["name"], asked["sas"])
                    await self.apost(CONFIRM_PATH, {"id": asked["id"], "accept": accept})
        finally:
            await events.aclose()

    async def _apost(self, path: str, payload: dict[str, Any]) -> tuple[int, AsyncIterator[bytes]]:
        """Send an HTTP/1.1 POST; return the status and the body's pieces as they come."""
        data = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        try:
            reader, writer = await asyncio.open_unix_connection(self.info.socket)
        except OSError as exc:
            raise ServerError(f"The agent at {self.info.socket} did not answer: {exc}.") from exc
        try:
            writer.write(head.encode() + data)
            await writer.drain()
            status_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()).strip():
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            status = int(status_line.split()[1])
        except (OSError, ValueError, IndexError) as exc:
            writer.close()
            raise ServerError(f"The agent at {self.info.socket} did not answer: {exc}.") from exc
        return status, _body(reader, writer, headers)


async def _body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
) -> AsyncIterator[bytes]:
    """Yield a response body's pieces (chunked, sized or up to the close); then hang up."""
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await reader.readline()).split(b";")[0], 16):
                yield await reader.readexactly(size)
                await reader.readexactly(2)
        elif "content-length" in headers:
            yield await reader.readexactly(int(headers["content-length"]))
        else:
            while piece := await reader.read(65536):
                yield piece
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        raise ServerError(f"The agent's stream broke: {exc}.") from exc
    finally:
        writer.close()


def _json_or_raise(response: http.client.HTTPResponse) -> dict[str, Any]:
    return _checked(response.status, response.read())


def _checked(status: int, raw: bytes) -> dict[str, Any]:
    """Return the JSON of an answer; FieldkitError with the agent's sentence on an error."""
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if status >= 400:
        message = (data.get("error") or {}).get("message") if isinstance(data, dict) else None
        raise FieldkitError(message or f"The agent answered HTTP {status}.")
    return data


def find_agent(home: Home, model_dir: Path | None = None) -> AgentClient | None:
    """Return a client for the running agent of `home`, or None when none answers.

    With `model_dir`, an agent serving another base model counts as none.
    """
    info = read_runtime(home)
    if info is None:
        return None
    if model_dir is not None and Path(info.model_dir).resolve() != Path(model_dir).resolve():
        return None
    client = AgentClient(info)
    try:
        client.timeout = 5.0
        client.get("/health")
    except FieldkitError:
        return None
    finally:
        client.timeout = 600.0
    return client
