"""OpenAI-style chat-completion shapes: the request checked against limits, the replies built.

Pure data in and out (no HTTP library, no model): the HTTP layer parses JSON, hands the
dict to `parse_request`, and serialises what the builders here return. A bad request
raises `RequestError` carrying the HTTP status and one sentence, in OpenAI's error shape.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fieldkit.prompts import MAX_PROMPT_CHARS, prompt_too_long

AUTO = "auto"
BASE = "base"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may wait for the model."""

    max_body_bytes: int = 1024 * 1024
    max_prompt_chars: int = MAX_PROMPT_CHARS  # `fieldkit ask` takes as many
    max_messages: int = 256
    max_tokens: int = 32768  # what `fieldkit ask --max-tokens` takes
    max_queue: int = 16


class RequestError(Exception):
    """A request the server refuses: `status` is the HTTP code, `str()` the sentence."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """Return OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
        kind = {
            401: "authentication_error",
            404: "not_found_error",
            413: "invalid_request_error",
            503: "server_overloaded",
        }.get(self.status, "invalid_request_error")
        return {
            "error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}
        }


@dataclass(frozen=True)
class ChatRequest:
    """One checked chat-completion request."""

    model: str
    messages: list[dict[str, str]]
    stream: bool = False
    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    notes: bool = True  # ground the question in the packet's notes (as `fieldkit ask`)
    clean: bool = True  # clean decoding (as `fieldkit ask`; false = `ask --raw`)
    passage: str | None = None  # the record a person picked to answer from (`ask --passage`)

    @property
    def question(self) -> str:
        """The last user message: what the router routes."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return message["content"]
        return self.messages[-1]["content"]


def _bad(message: str, param: str | None = None) -> RequestError:
    return RequestError(400, message, param=param)


def _is_unicode(value: Any) -> bool:
    """Whether every string in the parsed JSON `value` (keys too) is valid Unicode: JSON's
    escapes can spell a lone surrogate ("\\ud800"), which no encoder or tokenizer takes."""
    stack = [value]
    while stack:  # no recursion: json.loads took the nesting, so a walk must take it too
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_body(raw: bytes, limits: Limits) -> dict[str, Any]:
    """Return the JSON object in `raw`; RequestError 413 if too large, 400 if not an object
    (or nested too deep to parse, or holding text that is not valid Unicode)."""
    if len(raw) > limits.max_body_bytes:
        raise RequestError(413, f"The request body is over {limits.max_body_bytes} bytes.")
    try:  # NaN and Infinity are not JSON, though Python's parser takes them
        data = json.loads(raw, parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _bad("The request body must be a JSON object.")
    if not _is_unicode(data):
        raise _bad("The request holds text that is not valid Unicode.")
    return data


def _content(value: Any, index: int) -> str:
    """Return a message's text: a string, or OpenAI's list of {"type": "text"} parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in value
    ):
        return "".join(p["text"] for p in value)
    raise _bad(f"messages[{index}].content must be text.", f"messages[{index}].content")


def _messages(value: Any, limits: Limits) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _bad("messages must be a non-empty list.", "messages")
    if len(value) > limits.max_messages:
        raise _bad(f"At most {limits.max_messages} messages per request.", "messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object.", f"messages[{i}]")
        role = message.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise _bad(
                f"messages[{i}].role must be system, developer, user or assistant.",
                f"messages[{i}].role",
            )
        out.append(
            {
                "role": "system" if role == "developer" else role,
                "content": _content(message.get("content"), i),
            }
        )
    if not any(m["role"] == "user" for m in out):
        raise _bad("messages must include a user message.", "messages")
    if not any(m["content"].strip() for m in out if m["role"] == "user"):
        raise _bad("The question is empty.", "messages")
    chars = sum(len(m["content"]) for m in out)
    if refusal := prompt_too_long(chars, limits.max_prompt_chars):
        raise _bad(refusal, "messages")
    return out


def _number(data: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"{key} must be a number from {low:g} to {high:g}.", key)
    return value


# OpenAI parameters that change what a reply must hold, which this server cannot honour:
# refused rather than ignored (a caller would otherwise read a plain answer as a tool call,
# JSON or log-probabilities). Each is refused unless absent, null or its value here.
UNSUPPORTED = {
    "tools": ("tool calls", ([],)),
    "functions": ("function calls", ([],)),
    "tool_choice": ("tool calls", ("none",)),
    "function_call": ("function calls", ("none",)),
    "response_format": ("a response format other than text", ({"type": "text"},)),
    "logprobs": ("log-probabilities", (False,)),
    "top_logprobs": ("log-probabilities", (0,)),
    "audio": ("audio", ()),
    "modalities": ("output other than text", (["text"],)),
}


def _unsupported(data: dict[str, Any]) -> None:
    for key, (what, fine) in UNSUPPORTED.items():
        value = data.get(key)
        if value is not None and value not in fine:
            raise _bad(f"This server does not offer {what} ({key}).", key)


def parse_request(data: dict[str, Any], limits: Limits) -> ChatRequest:
    """Return the checked ChatRequest; RequestError 400 naming the first bad field.
    An absent or null optional field takes its default (`model`: auto)."""
    model = data.get("model")
    model = AUTO if model is None else model
    if not isinstance(model, str) or not model:
        raise _bad("model must be auto, base or a packet name.", "model")
    stream = data.get("stream")
    stream = False if stream is None else stream
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false.", "stream")
    key = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(data, key, 256, 1, limits.max_tokens)
    if max_tokens != int(max_tokens):
        raise _bad(f"{key} must be a whole number.", key)
    temperature = _number(data, "temperature", 0.0, 0.0, 2.0)
    stop = data.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise _bad("stop must be a string or a list of at most 4 strings.", "stop")
    if "" in stops:  # it would stop every answer before its first word
        raise _bad("stop strings must not be empty.", "stop")
    if data.get("n") not in (None, 1):
        raise _bad("n must be 1: this server returns one choice.", "n")
    _unsupported(data)
    options = data.get("fieldkit") or {}
    if not isinstance(options, dict) or not all(_option(k, v) for k, v in options.items()):
        raise _bad(
            'fieldkit takes {"notes": true|false, "clean": true|false, "passage": "ID"}.',
            "fieldkit",
        )
    if "passage" in options and (model in (AUTO, BASE) or not options.get("notes", True)):
        raise _bad(
            "A picked passage is one of a packet's notes: name that packet as the model, "
            "and leave notes on.",
            "fieldkit",
        )
    return ChatRequest(
        model=model,
        messages=_messages(data.get("messages"), limits),
        stream=stream,
        max_tokens=int(max_tokens),
        temperature=float(temperature),
        stop=stops,
        notes=options.get("notes", True),
        clean=options.get("clean", True),
        passage=options.get("passage"),
    )


PASSAGE_ID_CHARS = 200  # a picked passage's id is at most this long


def _option(key: str, value: Any) -> bool:
    """Whether one entry of a request's `fieldkit` options is one it takes."""
    if key == "passage":
        return isinstance(value, str) and 0 < len(value) <= PASSAGE_ID_CHARS
    return key in ("notes", "clean") and isinstance(value, bool)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def finish_reason(engine_reason: str) -> str:
    """Map the engine's reason ("stop", "length", "cancelled") to OpenAI's."""
    return "length" if engine_reason == "length" else "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    cid: str, model: str, text: str, reason: str, use: dict[str, int], extras: dict[str, Any]
) -> dict[str, Any]:
    """Return a `chat.completion` object with fieldkit's extras in `fieldkit`."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reason,
                "logprobs": None,
            }
        ],
        "usage": use,
        "fieldkit": extras,
    }


def chunk(
    cid: str,
    model: str,
    delta: dict[str, str],
    reason: str | None = None,
    *,
    use: dict[str, int] | None = None,
    extras: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return one `chat.completion.chunk`; the first and last carry fieldkit's extras."""
    out: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}],
    }
    if use is not None:
        out["usage"] = use
    if extras is not None:
        out["fieldkit"] = extras
    return out


def sse(data: dict[str, Any] | str) -> bytes:
    """Return one server-sent event carrying `data` (a dict as JSON, or "[DONE]")."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def model_entry(model_id: str, owned_by: str, created: float, **extra: Any) -> dict[str, Any]:
    """Return one `model` object of GET /v1/models; `extra` goes under `fieldkit`."""
    return {
        "id": model_id,
        "object": "model",
        "created": int(created),
        "owned_by": owned_by,
        "fieldkit": extra,
    }
