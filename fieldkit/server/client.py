"""Talk to a running agent of a home over its Unix socket, with the standard library.

`find_agent(home, model_dir)` returns an AgentClient when an agent of that home (serving
that base model) answers, else None. The client is the standard library's http.client
(no HTTP dependency for the CLI): JSON requests, and server-sent events read line by line.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fieldkit.errors import FieldkitError
from fieldkit.home import Home
from fieldkit.server.runtime import RuntimeInfo, ServerError, read_runtime


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

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Return the JSON of POST `path`; FieldkitError with the agent's sentence on an error."""
        conn, response = self._send("POST", path, payload)
        try:
            return _json_or_raise(response)
        finally:
            conn.close()

    def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a chat completion (not streamed) and return its JSON."""
        conn, response = self._send("POST", "/v1/chat/completions", {**payload, "stream": False})
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


    def post_lines(self, path: str, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST `payload` to `path` and yield each JSON line of the streamed answer."""
        conn, response = self._send("POST", path, payload)
        try:
            if response.status != 200:
                _json_or_raise(response)
            for raw in response:
                if raw.strip():
                    yield json.loads(raw)
        except OSError as exc:
            raise ServerError(f"The agent's stream broke: {exc}.") from exc
        finally:
            conn.close()


def _json_or_raise(response: http.client.HTTPResponse) -> dict[str, Any]:
    raw = response.read()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if response.status >= 400:
        message = (data.get("error") or {}).get("message") if isinstance(data, dict) else None
        raise FieldkitError(message or f"The agent answered HTTP {response.status}.")
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
