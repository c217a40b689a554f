"""``marketpipe serve``: the read API over stdlib ``ThreadingHTTPServer`` (JSON over HTTP, local use)."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from marketpipe.binance.api.handler import ApiRequest, ApiResponse, handle
from marketpipe.binance.api.store import ReadStore, SqlReadStore

log = logging.getLogger("marketpipe.binance.api")


def request_from(method: str, target: str) -> ApiRequest | ApiResponse:
    """Method + request target -> ApiRequest; a repeated parameter is a 400 (which one would win?)."""
    parts = urlsplit(target)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    names = [k for k, _ in pairs]
    repeated = sorted({k for k in names if names.count(k) > 1})
    if repeated:
        return ApiResponse(
            400, {"error": {"status": 400, "message": f"parameter {repeated[0]!r} given twice"}}
        )
    return ApiRequest(method, parts.path, dict(pairs))


def make_server(store: ReadStore, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """A bound server (port 0: any free port); call ``serve_forever`` (and ``shutdown`` to stop)."""
    answer: Callable[[ApiRequest], ApiResponse] = lambda request: handle(request, store)  # noqa: E731

    class Handler(BaseHTTPRequestHandler):
        server_version = "marketpipe"

        def _respond(self) -> None:
            parsed = request_from(self.command, self.path)
            response = parsed if isinstance(parsed, ApiResponse) else answer(parsed)
            body = response.json()
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _respond

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def _cmd_serve(args: argparse.Namespace) -> int:
    db_url = args.db_url or f"sqlite:///{(args.data_dir / 'marketpipe.db').as_posix()}"
    store = SqlReadStore(db_url)
    try:
        server = make_server(store, args.host, args.port)
    except OSError as exc:
        from marketpipe.errors import ConfigError

        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"marketpipe read API on http://{host}:{port}/ (OpenAPI: /openapi.json); Ctrl-C stops", flush=True)
    if args.duration:
        threading.Timer(args.duration, server.shutdown).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()
    return 0


def register_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve the Binance read API (JSON over HTTP) from the database")
    p.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="where marketpipe.db is (default ./data)"
    )
    p.add_argument("--db", dest="db_url", help="SQLAlchemy URL (default sqlite:///<data-dir>/marketpipe.db)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: any free port")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(handler=_cmd_serve)
