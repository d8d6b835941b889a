"""The HTTP routes of `fieldkit serve`: the only module that imports starlette.

GET /health, GET /v1/models, GET /v1/library, POST /v1/chat/completions (JSON, or
server-sent events with `stream: true`). Requests over the TCP port must carry the
token when one is set (`Authorization: Bearer TOKEN`, which is what the openai client
sends as its api key); the Unix socket is owner-only and needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import ipaddress
import json
import os
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fieldkit.errors import FieldkitError
from fieldkit.server import chat, client
from fieldkit.server.chat import BASE, RequestError

if TYPE_CHECKING:
    from fieldkit.answers import Answer
    from fieldkit.server.agent import Agent, Plan
    from fieldkit.server.radio import RadioHolder


def _error(exc: RequestError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _json_sent(request: Request) -> None:
    """Refuse (415) a body not sent as plain JSON: another Content-Type is what a web
    form or page sends, and a compressed body would be read as broken JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(415, "Send the request body as Content-Type: application/json.")
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding != "identity":
        raise RequestError(
            415, f"A body sent with Content-Encoding {coding[:40]} is not read here."
        )


def _loopback_name(authority: str) -> bool:
    """Whether a Host header or an Origin's host part ("HOST[:PORT]") names this machine:
    localhost or a loopback address."""
    host = authority.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refusal(request: Request, token: str | None) -> RequestError | None:
    """Return why a request may not be served, or None.

    The owner-only Unix socket serves any request. On the TCP port, a token set must be
    sent; with none set (loopback only), a web page must not reach the agent: a request
    naming another host (DNS rebinding) or sent from a page of another site (an Origin
    header) is refused, since a browser lets any page post to 127.0.0.1."""
    if _on_unix_socket(request):
        return None
    if token is None:
        host = request.headers.get("host", "")
        origin = request.headers.get("origin")
        if not _loopback_name(host):
            return RequestError(403, f"This agent answers at 127.0.0.1 only, not at {host[:80]!r}.")
        if origin is not None and not _loopback_name(origin.partition("://")[2].split("/")[0]):
            return RequestError(403, "This agent does not answer requests from web pages.")
        return None
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return None
    said = (
        "The token sent is not this server's token."
        if given
        else "This server needs a token: send `Authorization: Bearer TOKEN` "
        "(the openai client's api_key)."
    )
    return RequestError(401, said, code="invalid_api_key")


async def _read_body(request: Request, limit: int) -> bytes:
    """Return the body, refusing (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"The request body is over {limit} bytes.")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise RequestError(413, f"The request body is over {limit} bytes.")
        parts.append(part)
    return b"".join(parts)


def _extras(plan: Plan, answer: Answer | None) -> dict[str, Any]:
    """Return the `fieldkit` object: the route first; with the answer, its numbers too.

    `answer` is what `fieldkit ask --json` prints for the same question.
    """
    out = plan.extras()
    if answer is not None and answer.result is not None:
        r = answer.result
        out.update(
            sources=[s.to_dict() for s in answer.sources],
            unsupported=[u.to_dict() for u in answer.unsupported],
            swap_ms=round(r.swap_ms, 3),
            prompt_tps=round(r.prompt_tps, 2),
            generation_tps=round(r.generation_tps, 2),
            finish_reason=r.finish_reason,
            answer=answer.to_dict(),
        )
    return out


def _usage(answer: Answer) -> dict[str, int]:
    r = answer.result
    return chat.usage(r.prompt_tokens, r.generation_tokens) if r else chat.usage(0, 0)


def _finish_reason(answer: Answer) -> str:
    return chat.finish_reason(answer.result.finish_reason if answer.result else "stop")


def _on_unix_socket(request: Request) -> bool:
    server = request.scope.get("server")
    return server is not None and server[1] is None  # uvicorn: (path, None) on a Unix socket


def build_app(
    agent: Agent, token: str | None = None, radio: RadioHolder | None = None
) -> Starlette:
    """Return the ASGI app serving `agent`; `token` guards the TCP port when set.

    With `radio`, the /fieldkit/*/ble routes run Bluetooth LE scans, syncs and listeners
    for other processes of this user (Unix socket only); syncs and listeners stream their
    events as JSON lines (fieldkit/server/radio.py).
    """
    limits = agent.limits

    async def guard(request: Request) -> Response | None:
        refused = _refusal(request, token)
        return None if refused is None else _error(refused)

    async def health(request: Request) -> Response:
        if denied := await guard(request):
            return denied
        services = agent.services
        try:
            model_id: str | None = services.engine.info().model_id
        except FieldkitError:  # no model installed: the load error says so
            model_id = None
        return JSONResponse(
            {
                "status": "ok" if agent.ready else "error" if agent.load_error else "loading",
                "error": agent.load_error,
                "pid": os.getpid(),
                "home": str(services.home.root),
                "device_id": services.identity.device_id,
                "model": model_id,
                "model_dir": str(services.model_dir),
                "loaded": agent.ready,  # as `status`: the model and the router
                "model_loaded": services.engine.loaded,
                "waiting": agent.waiting,
                "max_queue": limits.max_queue,
                "served": agent.stats.served,
                "cancelled": agent.stats.cancelled,
                "failed": agent.stats.failed,
                "refused_busy": agent.stats.refused_busy,
                "cached_adapters": len(services.engine.cached_adapters()),
            }
        )

    async def models(request: Request) -> Response:
        if denied := await guard(request):
            return denied
        return JSONResponse({"object": "list", "data": await model_entries()})

    async def one_model(request: Request) -> Response:
        if denied := await guard(request):
            return denied
        name = request.path_params["name"]
        for entry in await model_entries():
            if name in (entry["id"], entry.get("fieldkit", {}).get("packet_id")):
                return JSONResponse(entry)
        said = f"No model named {name[:80]!r} answers here: see GET /v1/models."
        return _error(RequestError(404, said, param="model", code="model_not_found"))

    async def model_entries() -> list[dict[str, Any]]:
        model_id = agent.services.engine.info().model_id
        packets = await agent.on_library(agent.usable_packets)
        started = agent.stats.started
        data = [
            chat.model_entry(chat.AUTO, "fieldkit", started, kind="router", base=model_id),
            chat.model_entry(BASE, "fieldkit", started, kind="base", base=model_id),
        ]
        for r in packets:
            data.append(
                chat.model_entry(
                    r.name,
                    r.author_name or r.author_id,
                    r.received_at or started,
                    kind="packet",
                    packet_id=r.packet_id,
                    domain=r.domain,
                    description=r.description,
                    base=r.base_model_id,
                )
            )
        return data

    async def library(request: Request) -> Response:
        if denied := await guard(request):
            return denied
        return JSONResponse({"packets": await agent.on_library(agent.library_rows)})

    async def completions(request: Request) -> Response:
        if denied := await guard(request):
            return denied
        try:
            _json_sent(request)
            body = chat.parse_body(await _read_body(request, limits.max_body_bytes), limits)
            req = chat.parse_request(body, limits)
        except RequestError as exc:
            return _error(exc)
        except ClientDisconnect:
            return Response(status_code=400)
        cancel = threading.Event()
        events = agent.answer(req, cancel)
        try:
            first = await anext(events)  # routing and model checks happen before any byte
        except RequestError as exc:
            return _error(exc)
        plan = first[0]
        model = plan.record.name if plan.record else BASE
        cid = chat.completion_id()
        if req.stream:
            return StreamingResponse(
                _sse(events, plan, model, cid, cancel),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return await _whole(request, events, model, cid, cancel)

    async def radio_body(request: Request) -> dict[str, Any] | Response:
        """Return the JSON body of a radio request, or the response refusing it."""
        if radio is None:
            why = "This agent does not hold a radio (it was started with --no-ble)."
            return _error(RequestError(403, why))
        if not _on_unix_socket(request):
            why = "This agent takes Bluetooth requests over its Unix socket only."
            return _error(RequestError(403, why))
        try:
            return chat.parse_body(await _read_body(request, limits.max_body_bytes), limits)
        except RequestError as exc:
            return _error(exc)

    def radio_endpoint(name: str, streamed: bool):  # noqa: ANN202
        """Return the endpoint of `radio.<name>(body)`: its events as JSON lines when
        `streamed`, else the JSON of its (awaited) answer."""

        async def endpoint(request: Request) -> Response:
            body = await radio_body(request)
            if isinstance(body, Response):
                return body
            method = getattr(radio, name)
            if not streamed:
                answer = method(body)
                return JSONResponse(await answer if inspect.isawaitable(answer) else answer)

            async def lines() -> AsyncIterator[bytes]:
                async for event in method(body):
                    yield (json.dumps(event) + "\n").encode()

            return StreamingResponse(lines(), media_type="application/x-ndjson")

        return endpoint

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        said = (
            f"{request.method} is not served at {request.url.path}."
            if status == 405
            else f"Nothing is served at {request.url.path}: see GET /v1/models and "
            "POST /v1/chat/completions."
        )
        return _error(RequestError(status, said, code="not_found" if status == 404 else None))

    return Starlette(
        exception_handlers={404: not_found, 405: not_found},
        routes=[
            Route(client.SCAN_PATH, radio_endpoint("scan", False), methods=["POST"]),
            Route(client.SYNC_PATH, radio_endpoint("sync", True), methods=["POST"]),
            Route(client.LISTEN_PATH, radio_endpoint("listen", True), methods=["POST"]),
            Route(client.CONFIRM_PATH, radio_endpoint("answer", False), methods=["POST"]),
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/models/{name:path}", one_model),
            Route("/v1/library", library),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ],
    )


async def _whole(
    request: Request, events: AsyncIterator[Any], model: str, cid: str, cancel: threading.Event
) -> Response:
    """Collect the answer; a client that hangs up meanwhile cancels the generation."""

    async def collect() -> tuple[list[str], Any]:
        parts: list[str] = []
        async for item in events:
            if isinstance(item, str):
                parts.append(item)
            else:
                return parts, item
        raise RequestError(500, "The generation ended without a result.")

    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work = asyncio.ensure_future(collect())
    watch = asyncio.ensure_future(hung_up())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not work.done():
        cancel.set()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, RequestError):
            await work
        await events.aclose()
        return Response(status_code=499)
    try:
        parts, (plan, answer) = work.result()
    except RequestError as exc:
        return _error(exc)
    extras = _extras(plan, answer)
    text = plan.grounding.with_notice("".join(parts))  # what a person reads (see _sse)
    return JSONResponse(
        chat.completion(cid, model, text, _finish_reason(answer), _usage(answer), extras)
    )


async def _sse(
    events: AsyncIterator[Any], plan: Plan, model: str, cid: str, cancel: threading.Event
) -> AsyncIterator[bytes]:
    """Yield the answer as server-sent events; closing this iterator cancels the generation.

    The content starts with the gap or caution sentence, on a line of its own, as `fieldkit
    ask` prints it: a client that shows only the content still says that the packet has
    nothing on the question, or that the base model answers alone."""
    try:
        first = {"role": "assistant", "content": plan.grounding.with_notice("")}
        yield chat.sse(chat.chunk(cid, model, first, extras=_extras(plan, None)))
        async for item in events:
            if isinstance(item, str):
                yield chat.sse(chat.chunk(cid, model, {"content": item}))
                continue
            _, answer = item
            extras = _extras(plan, answer)
            reason = _finish_reason(answer)
            yield chat.sse(chat.chunk(cid, model, {}, reason, use=_usage(answer), extras=extras))
        yield chat.sse("[DONE]")
    except RequestError as exc:  # after the headers went out: say it in the stream
        yield chat.sse(exc.body())
    finally:
        cancel.set()
        with anyio.CancelScope(shield=True):  # a hung-up client cancelled us: close anyway
            await events.aclose()
