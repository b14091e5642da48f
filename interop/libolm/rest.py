"""A small client of a Guildhall server: the REST API (`/api/v1`) and the gateway's dispatches."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TIMEOUT_SECONDS = 30


class ApiError(Exception):
    """An answer other than the one expected."""

    def __init__(self, method: str, path: str, status: int, body: object) -> None:
        super().__init__(f"{method} {path}: {status} {json.dumps(body)[:300]}")
        self.status = status
        self.body = body


class Api:
    """The REST API of one server, with or without a session token."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        # Loopback servers: never through a proxy the environment may name.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """`method` on `path` (absolute, e.g. `/api/v1/keys/upload`): (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json(error.read())

    def expect(self, method: str, path: str, body: object = None, status: int = 200) -> dict:
        """`call`, failing unless the answer has `status`."""
        got, answer = self.call(method, path, body)
        if got != status:
            raise ApiError(method, path, got, answer)
        return answer if isinstance(answer, dict) else {}

    def v1(self, method: str, path: str, body: object = None, status: int = 200) -> dict:
        """`expect` on `/api/v1<path>`."""
        return self.expect(method, "/api/v1" + path, body, status)

    def gateway_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/gateway?encoding=json"


def _json(raw: bytes) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


@dataclass
class Dispatches:
    """The gateway's dispatches as they arrive, shared with the thread that reads them."""

    events: list[tuple[str, dict]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    ready: bool = False
    closed: str | None = None

    def add(self, name: str, data: dict) -> None:
        with self.changed:
            self.events.append((name, data))
            self.ready = self.ready or name == "READY"
            self.changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Waits until more than `seen` dispatches arrived or `timeout` passed; the count."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.events) > seen, timeout)
            return len(self.events)

    def named(self, name: str) -> list[dict]:
        with self.changed:
            return [data for event, data in self.events if event == name]


class Gateway(threading.Thread):
    """A gateway connection identified with a token, read on its own thread.

    It only records dispatches: all Olm work happens on the peer's main thread.
    """

    def __init__(self, api: Api) -> None:
        super().__init__(daemon=True)
        self._api = api
        self.dispatches = Dispatches()

    def run(self) -> None:
        try:
            with connect(self._api.gateway_url(), open_timeout=TIMEOUT_SECONDS) as socket:
                hello = json.loads(socket.recv(timeout=TIMEOUT_SECONDS))
                interval = hello["d"]["heartbeat_interval"] / 1000
                socket.send(json.dumps({"op": 2, "d": {"token": self._api.token}}))
                self._read(socket, interval)
        except (ConnectionClosed, OSError, TimeoutError, ValueError) as error:
            self.dispatches.closed = repr(error)
            print(f"gateway closed: {error!r}", file=sys.stderr)

    def _read(self, socket, interval: float) -> None:
        next_beat = time.monotonic() + interval
        while True:
            try:
                frame = json.loads(socket.recv(timeout=max(0.0, next_beat - time.monotonic())))
            except TimeoutError:
                socket.send(json.dumps({"op": 1, "d": None}))
                next_beat = time.monotonic() + interval
                continue
            if frame.get("op") == 0:
                self.dispatches.add(frame.get("t"), frame.get("d") or {})

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.dispatches.ready:
            if self.dispatches.closed or time.monotonic() > deadline:
                raise RuntimeError(f"no READY from the gateway ({self.dispatches.closed})")
            self.dispatches.wait(len(self.dispatches.events), 0.1)
