"""The labelling web app: a small Starlette app over a :class:`LabelStore`, one static page, plain JavaScript.

``trinity label --web QUERIES`` (or :func:`serve`) starts it with uvicorn. Routes:

* ``GET /`` the page, ``GET /static/app.js`` and ``/static/app.css``;
* ``GET /api/queries`` the current round's queries; ``GET /api/state?worker=NAME`` progress, answer counts
  and the worker's own answers (the page polls it and notices a new round);
* ``POST /api/answer`` ``{"round", "index", "label", "worker"}``: validated, appended and fsynced before the
  reply (``{"saved": {...}}``), or refused with the reason (400 invalid, 404 not queried, 409 stale round or
  item already answered by ``k`` other people, 413 too large, 415 not JSON);
* ``GET /api/image/{round}/{index}`` an example's image, only for an item of the current round.

Security: it binds ``127.0.0.1`` by default and then answers only requests whose ``Host`` is a loopback
name (no DNS rebinding); any other ``host`` needs an access token (generated and printed once), checked on
every request (cookie set by ``/?token=...``, or the ``X-Trinity-Token`` header). Request bodies are
limited to ``max_body`` bytes, answers must be ``application/json`` (so no other site can post them), and
every response carries a strict Content-Security-Policy (no inline script).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import json
import secrets
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from trinity_lightning.rounds.web.store import LabelStore, RejectedAnswerError

__all__ = ["create_app", "serve", "web_main"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.0.0.0/8``, ``::1`` or ``localhost``)."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Guard:
    """ASGI middleware: Host check (loopback), access token, body size limit and security headers."""

    def __init__(self, app: ASGIApp, token: str | None, loopback: bool, max_body: int) -> None:
        self.app, self.token, self.loopback, self.max_body = app, token, loopback, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if self.loopback and hostname not in _LOOPBACK_NAMES:
            await _plain(send, 403, f"Host {host!r} refused: this server answers loopback names only")
            return
        set_cookie = False
        if self.token is not None:
            given = headers.get("x-trinity-token")
            if given is None:
                cookie: SimpleCookie = SimpleCookie(headers.get("cookie", ""))
                given = cookie["trinity_token"].value if "trinity_token" in cookie else None
            if given is None and scope["path"] == "/":
                given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [None])[0]
                set_cookie = given is not None
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                await _plain(send, 403, "access token missing or wrong: open the URL printed by the server")
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _plain(send, 413, f"request body over {self.max_body} bytes")
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
                if set_cookie and self.token:
                    message["headers"].append(
                        (b"set-cookie", f"trinity_token={self.token}; HttpOnly; SameSite=Strict; Path=/".encode())
                    )
            await send(message)

        await self.app(scope, receive, secured)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + _HEADERS})
    await send({"type": "http.response.body", "body": body})


def _static(name: str) -> bytes:
    return resources.files("trinity_lightning.rounds.web").joinpath("static", name).read_bytes()


def create_app(store: LabelStore, token: str | None = None, loopback: bool = True, max_body: int = MAX_BODY) -> ASGIApp:
    """The ASGI app over ``store`` (see the module docstring for routes and security).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "round_0001.queries.jsonl").write_text('{"index": 3, "choices": ["cat", "dog"]}\\n')
        >>> app = create_app(LabelStore(d))
        >>> callable(app)
        True
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    from trinity_lightning.rounds.web.store import _IMAGE_TYPES

    pages = {name: _static(name) for name in ("index.html", "app.js", "app.css")}
    types = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css"}

    async def page(request: Request) -> Response:
        return Response(pages["index.html"], media_type=types["html"])

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in pages or name == "index.html":
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(pages[name], media_type=types[name.rsplit(".", 1)[1]])

    async def queries(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(store.queries))

    async def state(request: Request) -> Response:
        worker = request.query_params.get("worker") or None
        return JSONResponse(await run_in_threadpool(store.state, worker))

    async def answer(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "answers are posted as application/json"}, status_code=415)
        raw = b""
        async for chunk in request.stream():  # also bounds a body sent without Content-Length
            raw += chunk
            if len(raw) > max_body:
                return JSONResponse({"error": f"request body over {max_body} bytes"}, status_code=413)
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
        except ValueError as err:
            return JSONResponse({"error": f"not a JSON object: {err}"}, status_code=400)
        try:
            saved = await run_in_threadpool(
                store.answer, body.get("round"), body.get("index"), body.get("label"), body.get("worker")
            )
        except RejectedAnswerError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        return JSONResponse({"saved": saved, **store.progress(saved["index"])})

    async def image(request: Request) -> Response:
        try:
            rnd, index = int(request.path_params["round"]), int(request.path_params["index"])
        except ValueError:
            return Response("not found", status_code=404, media_type="text/plain")
        path = await run_in_threadpool(store.example_file, rnd, index)
        if path is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=_IMAGE_TYPES[path.suffix.lower()])

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/queries", queries),
        Route("/api/state", state),
        Route("/api/answer", answer, methods=["POST"]),
        Route("/api/image/{round}/{index}", image),
    ]
    return _Guard(Starlette(routes=routes), token, loopback, max_body)


def serve(
    source: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    answers_per_item: int = 1,
    token: str | None = None,
    open_browser: bool = False,
    choices: Sequence[str] | None = None,
) -> None:
    """Serve the labelling page for ``source`` (a folder of rounds or one queries file) until interrupted.

    A non-loopback ``host`` needs an access token: one is generated when ``token`` is ``None`` and printed
    once in the URL. ``port=0`` picks a free port (the URL line says which).

    Example:
        >>> serve("outputs/queries")  # doctest: +SKIP
        labelling round 1 (40 items) at http://127.0.0.1:8765/
    """
    import uvicorn

    store = LabelStore(source, answers_per_item=answers_per_item, choices=choices)
    loopback = is_loopback(host)
    if not loopback and token is None:
        token = secrets.token_urlsafe(24)
    app = create_app(store, token=token, loopback=loopback)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)

    async def announce() -> None:
        import asyncio

        while not server.started:
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
        state = store.state()
        what = f"round {state['round']} ({state['total']} items)" if state["round"] is not None else "no round yet"
        print(f"labelling {what} at {url}", flush=True)
        if token:
            print("the access token is in this URL only: share it with the annotators, not in public", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    async def main() -> None:
        import asyncio

        task = asyncio.ensure_future(announce())
        await server.serve()
        task.cancel()

    import asyncio

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def web_main(argv: Sequence[str] | None = None) -> int:
    """``trinity label --web QUERIES``: serve the labelling page; returns the exit code.

    Example:
        >>> web_main(["--help"])  # doctest: +ELLIPSIS
        usage: trinity label --web ...
        0
    """
    parser = argparse.ArgumentParser(
        prog="trinity label --web",
        description="Serve a local labelling page over a folder of round_NNNN.queries.jsonl files (the newest "
        "round; a new round is picked up) or one queries file. Answers are appended to the round's answers file "
        "at once, with the annotator's name.",
    )
    parser.add_argument("queries", help="a queries folder (FileOracle's directory) or one round_NNNN.queries.jsonl")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--answers-per-item", type=int, default=1, help="k different people per item (default 1)")
    parser.add_argument("--choices", default=None, help="comma-separated label names (default: from the queries)")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not Path(args.queries).exists():
        print(f"trinity label --web: no such queries folder or file: {args.queries}", file=sys.stderr)
        return 2
    if args.answers_per_item < 1:
        print(
            f"trinity label --web: --answers-per-item must be at least 1, got {args.answers_per_item}", file=sys.stderr
        )
        return 2
    choices = args.choices.split(",") if args.choices else None
    serve(args.queries, args.host, args.port, args.answers_per_item, open_browser=args.open, choices=choices)
    return 0
