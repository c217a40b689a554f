"""A loopback Plivo Message API for tests and demos: the real SDK talks to it (PROTOCOLS.md §5.4).

Behaviour follows what the real API does for ``messages.create`` (§5.2, §5.3):

* ``POST /v1/Account/<auth_id>/Message/`` with ``Authorization: Basic`` for the configured id and
  token, else 401 ``{"api_id", "error": "Authentication failed"}``;
* a JSON body with ``dst`` and ``text`` (for ``type`` sms) and ``src`` (or ``powerpack_uuid``), else
  400 with ``error``; ``dst`` split on ``<``; 202 with one ``message_uuid`` per destination;
* ``GET /v1/Account/<auth_id>/Message/<uuid>/`` returns the message (state ``delivered``).

Every request is recorded (``requests``) and every accepted message too (``messages``): tests assert
on what a phone would have received. Failures are injected in order with :meth:`FakePlivo.fail_next`
(``fail_next(500)`` then the next request succeeds: "500 then 202"; 429, 503, …) and
:meth:`FakePlivo.stall_next` (accept the message, answer late: the client times out not knowing).

Runs on its own thread so synchronous code (the checker, the SDK) and asyncio tests can both use it::

    with FakePlivo() as fake:
        env = fake.env()            # PLIVO_AUTH_ID/TOKEN and MARKETPIPE_PLIVO_API_URL for the SDK
        ...
        assert [m.text for m in fake.messages] == [...]

Also ``python -m marketpipe.simulator.plivo`` (prints the environment to export); ``GET /_fake/messages``
lists what was accepted, ``POST /_fake/fail?status=500&times=1`` injects failures from another process.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from marketpipe import envnames

TEST_AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
TEST_AUTH_TOKEN = "test-token"


@dataclass(frozen=True)
class PlivoRequest:
    """One HTTP request as received, with the status it was answered with."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class PlivoMessage:
    """An accepted message: what the destination phones would receive."""

    src: str
    dst: list[str]
    text: str
    uuids: list[str]
    at: float
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Fault:
    status: int = 0
    stall: float = 0.0


class FakePlivo:
    """The fake server; ``url`` is the value for ``MARKETPIPE_PLIVO_API_URL``."""

    def __init__(
        self,
        auth_id: str = TEST_AUTH_ID,
        auth_token: str = TEST_AUTH_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.auth_id = auth_id
        self.auth_token = auth_token
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._requests: list[PlivoRequest] = []
        self._messages: list[PlivoMessage] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FakePlivo:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-plivo", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakePlivo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakePlivo is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def env(self, src: str = "+15550000001", dst: str = "+15550000002") -> dict[str, str]:
        """Environment variables that point ``marketpipe`` (and the SDK) at this server."""
        return {
            envnames.PLIVO_AUTH_ID: self.auth_id,
            envnames.PLIVO_AUTH_TOKEN: self.auth_token,
            envnames.PLIVO_API_URL: self.url,
            envnames.ALERT_SMS_FROM: src,
            envnames.ALERT_SMS_TO: dst,
        }

    # -- scripting and inspection -------------------------------------------------------------------

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses (nothing queued), then behave normally."""
        with self._lock:
            self._faults.extend(_Fault(status=s) for s in statuses)

    def stall_next(self, seconds: float) -> None:
        """Accept the next message but answer only after ``seconds`` (a client timeout: outcome unknown)."""
        with self._lock:
            self._faults.append(_Fault(stall=seconds))

    @property
    def requests(self) -> list[PlivoRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[PlivoMessage]:
        with self._lock:
            return list(self._messages)

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._messages.clear()
            self._faults.clear()

    # -- request handling (called on server threads) ------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, float]:
        """Route one request: (status, JSON body, seconds to wait before answering)."""
        parts = urlsplit(target)
        path = parts.path
        stall = 0.0
        if path.startswith("/_fake/"):
            status, payload = self._control(method, path, dict(parse_qsl(parts.query)))
        else:
            with self._lock:
                fault = self._faults.popleft() if self._faults and path.endswith("/Message/") else None
            if fault is not None and fault.status:
                status, payload = fault.status, _error(f"injected HTTP {fault.status}")
            else:
                status, payload = self._api(method, path, headers, body)
                stall = fault.stall if fault is not None else 0.0
        with self._lock:
            self._requests.append(PlivoRequest(method, path, headers, body, status, time.time()))
        return status, payload, stall

    def _api(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        if segments[:2] != ["v1", "Account"] or len(segments) < 4 or segments[3] != "Message":
            return 404, _error("not found")
        if not self._authorized(headers.get("authorization", "")) or segments[2] != self.auth_id:
            return 401, _error("Authentication failed")
        if method == "GET" and len(segments) == 5:
            return self._lookup(segments[4])
        if method != "POST" or len(segments) != 4:
            return 405, _error(f"{method} not allowed")
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return 400, _error("invalid JSON body")
        if not isinstance(data, dict):
            return 400, _error("request body must be a JSON object")
        dst, text, src = data.get("dst"), data.get("text"), data.get("src")
        if not isinstance(dst, str) or not dst:
            return 400, _error("dst is a required parameter")
        if data.get("type", "sms") == "sms" and (not isinstance(text, str) or not text):
            return 400, _error("text is a required parameter")
        if not src and not data.get("powerpack_uuid"):
            return 400, _error("src or powerpack_uuid is required")
        numbers = [n for n in dst.split("<") if n]
        uuids = [str(uuid.uuid4()) for _ in numbers]
        message = PlivoMessage(str(src or ""), numbers, str(text), uuids, time.time(), data)
        with self._lock:
            self._messages.append(message)
        return 202, {"api_id": str(uuid.uuid4()), "message": "message(s) queued", "message_uuid": uuids}

    def _lookup(self, message_uuid: str) -> tuple[int, Any]:
        for message in self.messages:
            if message_uuid in message.uuids:
                return 200, {
                    "api_id": str(uuid.uuid4()),
                    "message_uuid": message_uuid,
                    "message_state": "delivered",
                    "message_direction": "outbound",
                    "message_type": "sms",
                    "from_number": message.src,
                    "to_number": message.dst[message.uuids.index(message_uuid)],
                    "units": 1,
                }
        return 404, _error("not found")

    def _authorized(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.auth_id}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    def _control(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/_fake/messages" and method == "GET":
            return 200, [asdict(m) for m in self.messages]
        if path == "/_fake/fail" and method == "POST":
            try:
                status, times = int(query.get("status", "500")), int(query.get("times", "1"))
            except ValueError:
                return 400, _error("status and times must be integers")
            self.fail_next(*([status] * times))
            return 200, {"ok": True, "queued": times}
        return 404, _error("not found")


def _error(text: str) -> dict[str, str]:
    return {"api_id": str(uuid.uuid4()), "error": text}


class _Handler(BaseHTTPRequestHandler):
    owner: FakePlivo
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, stall = self.owner.handle(self.command, self.path, headers, body)
        if stall:
            time.sleep(stall)
        data = json.dumps(payload).encode()
        with contextlib.suppress(ConnectionError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests assert on records
        return


def main(argv: list[str] | None = None) -> int:
    """Serve the fake in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m marketpipe.simulator.plivo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args(argv)
    with FakePlivo(host=args.host, port=args.port) as fake:
        print(f"fake Plivo on {fake.url}", flush=True)
        for name, value in fake.env().items():
            print(f"  export {name}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.duration) if args.duration else threading.Event().wait()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
