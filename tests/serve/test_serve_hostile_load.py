"""`/healthz` under hostile load (issue 22): while every classification slot is held, uploads
arrive a byte at a time, headers never finish and more uploads pile up, a real uvicorn server
(the CLI's options, on 127.0.0.1) still answers `/healthz` at once with its documented body,
refuses the extra work with its documented statuses, and recovers once they are gone. The
timeouts below only turn a hang into a failure."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import ExitStack, contextmanager

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve,test]'")
import httpx  # noqa: E402
import uvicorn  # noqa: E402

from lungcnn.benchmarks.serve_process import HOST, free_port  # noqa: E402
from lungcnn.edge.serve.app import create_app  # noqa: E402
from lungcnn.edge.serve.protocol import server_options  # noqa: E402
from lungcnn.edge.serve.settings import ServeSettings  # noqa: E402
from test_serve_api import _BlockingClassifier  # noqa: E402

HANG = 30.0  # seconds after which a request that should have answered counts as a hang
BOUNDARY = "b"


@contextmanager
def running(settings: ServeSettings, make_classifier=None):
    """`create_app(settings)` served by uvicorn with `edge-classify serve`'s options, in a
    thread; yields the app."""
    app = create_app(settings, make_classifier)
    server = uvicorn.Server(uvicorn.Config(app, **{**server_options(settings),
                                                   "log_level": "warning"}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive())
        assert server.started, "server did not start"
        yield app
    finally:
        server.should_exit = True
        thread.join(HANG)


def wait_for(condition, what: str = "condition") -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {HANG:g} s"
        time.sleep(0.02)


def multipart(name: str, data: bytes) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\n\r\n').encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def raw_request(port: int, body: bytes | None, send_body_bytes: int | None = None,
                header_bytes: int | None = None) -> socket.socket:
    """A connection that sends the first `header_bytes` of a request's head (all of it when
    None), then the first `send_body_bytes` of its body, and then nothing more."""
    if body is None:
        head = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    else:
        head = (f"POST /v1/classify HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
    connection = socket.create_connection((HOST, port), timeout=HANG)
    connection.sendall(head[:header_bytes] if header_bytes else head)
    if body is not None and header_bytes is None:
        connection.sendall(body[:send_body_bytes])
    return connection


def read_response(connection: socket.socket) -> tuple[int, bytes]:
    """(status, everything up to the server closing or a whole JSON body) of one response."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = [line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")]
        if length and len(body) >= int(length[0]):
            break
    return (int(data.split(b" ", 2)[1]) if data else 0), data


def healthz(port: int) -> httpx.Response:
    return httpx.get(f"http://{HOST}:{port}/healthz", timeout=HANG)


def test_healthz_answers_while_hostile_clients_hold_every_slot(int8_model, scan_files):
    settings = ServeSettings(model=int8_model, port=free_port(), workers=1, queue_limit=1,
                             header_timeout=5.0, upload_timeout=5.0, max_connections=64)
    started, release = threading.Event(), threading.Event()
    scan = multipart("a.jpg", scan_files[0].read_bytes())
    url = f"http://{HOST}:{settings.port}/v1/classify"
    with ExitStack() as stack, running(
            settings, lambda: _BlockingClassifier(int8_model, started, release)) as app:
        stack.callback(release.set)
        held: list[dict] = []
        uploads = [threading.Thread(target=lambda: held.append(_post(url, scan)))
                   for _ in range(settings.capacity)]
        for upload in uploads:
            upload.start()
        wait_for(lambda: app.state.pool.in_flight == settings.capacity, "every slot held")
        slow_bodies = [stack.enter_context(raw_request(settings.port, scan, send_body_bytes=40))
                       for _ in range(5)]
        slowloris = [stack.enter_context(raw_request(settings.port, scan, header_bytes=30))
                     for _ in range(20)]
        extra = [_post(url, scan) for _ in range(3)]

        answer = healthz(settings.port)
        assert answer.status_code == 200
        assert answer.json() == {"status": "ok", "model_file": int8_model.name,
                                 "in_flight": settings.capacity,
                                 "capacity": settings.capacity}
        assert [r["status"] for r in extra] == [503] * 3
        assert all("server busy" in r["error"] for r in extra)

        release.set()
        for upload in uploads:
            upload.join(HANG)
        assert [r["status"] for r in held] == [200] * settings.capacity
        assert [read_response(c)[0] for c in slow_bodies] == [408] * len(slow_bodies)
        assert [read_response(c) for c in slowloris] == [(0, b"")] * len(slowloris)
        wait_for(lambda: app.state.pool.in_flight == 0, "every slot free again")
        assert healthz(settings.port).json()["in_flight"] == 0
        assert _post(url, scan)["status"] == 200


def test_healthz_recovers_once_half_sent_headers_held_every_connection(int8_model):
    """Over --max-connections uvicorn itself answers 503 (documented); the header deadline
    closes the half-sent requests, and /healthz answers 200 again."""
    settings = ServeSettings(model=int8_model, port=free_port(), max_connections=8,
                             header_timeout=10.0)
    with ExitStack() as stack, running(settings):
        slowloris = [stack.enter_context(raw_request(settings.port, None, header_bytes=20))
                     for _ in range(settings.max_connections)]
        wait_for(lambda: healthz(settings.port).status_code == 503, "connections full")
        assert [read_response(c) for c in slowloris] == [(0, b"")] * len(slowloris)
        wait_for(lambda: healthz(settings.port).status_code == 200, "recovery")
        assert healthz(settings.port).json()["status"] == "ok"


def _post(url: str, body: bytes) -> dict:
    response = httpx.post(url, content=body, timeout=HANG, headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    error = json.loads(response.text).get("error") if response.status_code != 200 else None
    return {"status": response.status_code, "error": error}
