"""The server against other sites and slow or hostile clients (issue 22, items 14-19): a
foreign Host (DNS rebinding) and a cross-site POST are refused, a slot is taken only once
the body is in memory, headers and classifications have deadlines, a long multipart
boundary is a 400."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve,test]'")
import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402

from lungcnn.benchmarks.serve_process import free_port  # noqa: E402
from lungcnn.edge.serve.app import create_app  # noqa: E402
from lungcnn.edge.serve.guard import host_name  # noqa: E402
from lungcnn.edge.serve.protocol import protocol_with_header_deadline  # noqa: E402
from lungcnn.edge.serve.settings import ServeSettings  # noqa: E402
from test_serve_api import BASE_URL, _BlockingClassifier, assert_clean_error, upload  # noqa: E402


@pytest.fixture(scope="module")
def app(int8_model):
    """Shared: used without `with`, so no test client's exit closes its pool."""
    return create_app(ServeSettings(model=int8_model, allowed_hosts=("xray.local",),
                                    allowed_origins=("https://ward.example",)))


@pytest.fixture(scope="module")
def scan(scan_files) -> list:
    return upload(("a.jpg", scan_files[0].read_bytes()))


@pytest.mark.parametrize("base", ["http://evil.example:8000", "http://127.0.0.2:8000",
                                  "http://192.168.1.10:8000"])
def test_a_foreign_host_is_refused(app, base):
    client = TestClient(app, base_url=base)
    assert "unexpected Host" in assert_clean_error(client.get("/healthz"), 400)


@pytest.mark.parametrize("base", ["http://127.0.0.1:8000", "http://localhost:8000",
                                  "http://[::1]:8000", "http://xray.local"])
def test_the_bound_address_loopback_names_and_allowed_hosts_are_served(app, base):
    client = TestClient(app, base_url=base)
    assert client.get("/healthz").status_code == 200


def test_any_host_on_a_wildcard_address_without_a_list(int8_model):
    wildcard = create_app(ServeSettings(model=int8_model, host="0.0.0.0"))
    with TestClient(wildcard, base_url="http://device.lan") as client:
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:8000"])
def test_a_cross_origin_post_is_refused(app, scan, origin):
    client = TestClient(app, base_url=BASE_URL)
    response = client.post("/v1/classify", files=scan, headers={"Origin": origin})
    assert "cross-origin" in assert_clean_error(response, 403)


@pytest.mark.parametrize("origin", [BASE_URL, "https://ward.example", None])
def test_same_origin_allowed_origin_and_no_origin_posts_are_served(app, scan, origin):
    headers = {"Origin": origin} if origin else {}
    client = TestClient(app, base_url=BASE_URL)
    assert client.post("/v1/classify", files=scan, headers=headers).status_code == 200


def test_host_names_without_their_port():
    assert [host_name(h) for h in ("a.b:80", "[::1]:8000", "::1", "X.Y")] == [
        "a.b", "::1", "::1", "x.y"]


def test_a_boundary_longer_than_the_parser_takes_is_400(app):
    client = TestClient(app, base_url=BASE_URL)
    response = client.post("/v1/classify", content=b"x", headers={
        "content-type": "multipart/form-data; boundary=" + "b" * 300})
    assert "malformed multipart body" in assert_clean_error(response, 400)


def test_no_favicon_404(app):
    client = TestClient(app, base_url=BASE_URL)
    assert client.get("/favicon.ico").status_code == 204


def test_a_slow_upload_holds_no_worker_slot(int8_model, scan_files):
    """One worker, no queue: a scan still arriving does not make the next one a 503."""
    app = create_app(ServeSettings(model=int8_model, workers=1, queue_limit=0))
    data = scan_files[0].read_bytes()
    head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'

    async def scenario():
        first_sent, rest = asyncio.Event(), asyncio.Event()

        async def slow_body():
            yield head
            first_sent.set()
            await rest.wait()
            yield data + b"\r\n--b--\r\n"

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            slow = asyncio.create_task(client.post("/v1/classify", content=slow_body(), headers={
                "content-type": "multipart/form-data; boundary=b"}))
            await first_sent.wait()
            fast = await client.post("/v1/classify", files=upload(("b.jpg", data)))
            rest.set()
            return fast, await slow

    fast, slow = asyncio.run(scenario())
    assert fast.status_code == 200 and slow.status_code == 200, (fast.text, slow.text)


def test_a_classification_past_its_deadline_is_503(int8_model, scan):
    started, release = threading.Event(), threading.Event()
    app = create_app(ServeSettings(model=int8_model, request_timeout=0.2),
                     lambda: _BlockingClassifier(int8_model, started, release))
    try:
        client = TestClient(app, base_url=BASE_URL)
        response = client.post("/v1/classify", files=scan)
        assert "not done within 0.2 s" in assert_clean_error(response, 503)
    finally:
        release.set()


def test_headers_that_never_finish_lose_their_connection():
    async def hello(scope, receive, send):
        await PlainTextResponse("hello")(scope, receive, send)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(hello, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off",
                                           http=protocol_with_header_deadline(0.3)))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as whole:
            whole.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert whole.recv(4096).startswith(b"HTTP/1.1 200 OK")
        with socket.create_connection(("127.0.0.1", port), timeout=60) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\nHost: 127")  # and nothing more
            assert slow.recv(4096) == b""  # closed by the server
    finally:
        server.should_exit = True
        thread.join(60)
