"""`fieldkit serve`: one resident agent per home, answering over OpenAI-style HTTP.

`runtime` (where a running agent can be found, its token), `chat` (the request and
response shapes, pure), `agent` (the resident state: library thread, router, engine,
queue), `app` (the HTTP routes; the only module importing starlette), `run` (sockets and
uvicorn) and `client` (the standard library's http.client, used by `fieldkit ask`).
"""
