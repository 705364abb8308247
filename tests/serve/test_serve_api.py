"""The HTTP API of `edge-classify serve`, through FastAPI's test client with the tiny int8
model: the same records as the CLI, the bounds, the token and clean error bodies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve,test]'")
from fastapi.testclient import TestClient  # noqa: E402

from lungcnn.edge.api import Classifier  # noqa: E402
from lungcnn.edge.cli import main as cli_main  # noqa: E402
from lungcnn.edge.pixels import MAX_PIXELS  # noqa: E402
from lungcnn.edge.heatmap import DISCLAIMER  # noqa: E402
from lungcnn.edge.report import NOTICE  # noqa: E402
from lungcnn.edge.serve.app import create_app  # noqa: E402
from lungcnn.edge.serve.settings import ServeSettings  # noqa: E402
from lungcnn.edge.serve.uploads import (  # noqa: E402
    ReceiveBudget,
    UploadError,
    UploadLimits,
    read_uploads,
)

TOKEN = "test-token-7f3a"


@pytest.fixture(scope="module")
def classifier(int8_model) -> Classifier:
    return Classifier(int8_model)


BASE_URL = "http://127.0.0.1:8000"  # the Host a browser on the device sends


def make_client(model, **settings) -> TestClient:
    return TestClient(create_app(ServeSettings(model=model, **settings)), base_url=BASE_URL)


@pytest.fixture(scope="module")
def client(int8_model):
    with make_client(int8_model) as test_client:
        yield test_client


def upload(*files: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in files]


def assert_clean_error(response, status: int) -> str:
    """A JSON body {"error": one line} with the status, and no traceback anywhere."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and 'File "' not in response.text
    message = response.json()["error"]
    assert message and "\n" not in message
    return message


def test_one_scan_gives_the_classifiers_record(client, classifier, scan_files):
    data = scan_files[0].read_bytes()
    response = client.post("/v1/classify", files=upload((scan_files[0].name, data)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["records"] == [classifier.classify(data, name=scan_files[0].name).to_dict()]
    assert body["heatmaps"] == [None] and body["error"] is None
    assert body["notice"] == NOTICE and body["records"][0]["notice"] == NOTICE
    assert response.headers["cache-control"] == "no-store"


def test_several_scans_in_upload_order_with_heatmaps(client, classifier, scan_files):
    files = [(path.name, path.read_bytes()) for path in scan_files[:3]]
    response = client.post("/v1/classify", params={"heatmap": "id"}, files=upload(*files))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["records"] == [classifier.classify(data, name=name).to_dict()
                               for name, data in files]
    for (name, data), entry in zip(files, body["heatmaps"]):
        png = client.get(entry["url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(png.content)) as image:
            assert image.text["Disclaimer"] == DISCLAIMER and image.text["Scan"] == name
            expected = classifier.heatmap(data)
            assert image.size == expected.size
            assert image.convert("RGB").tobytes() == expected.tobytes()


def test_inline_heatmap_is_base64_png(client, scan_files):
    response = client.post("/v1/classify", params={"heatmap": "inline"},
                           files=upload((scan_files[1].name, scan_files[1].read_bytes())))
    entry = response.json()["heatmaps"][0]
    assert set(entry) == {"png_base64"}
    with Image.open(io.BytesIO(base64.b64decode(entry["png_base64"]))) as image:
        assert image.format == "PNG"


def test_unknown_heatmap_ids_are_404_or_422(client):
    assert_clean_error(client.get("/v1/heatmap/" + "A" * 22), 404)
    assert_clean_error(client.get("/v1/heatmap/..%2F..%2Fetc%2Fpasswd"), 404)  # no route
    assert_clean_error(client.get("/v1/heatmap/..passwd"), 422)  # not an id


def test_heatmap_cache_is_bounded(int8_model, scan_files):
    with make_client(int8_model, heatmap_cache=1) as small:
        urls = []
        for path in scan_files[:2]:
            response = small.post("/v1/classify", params={"heatmap": "id"},
                                  files=upload((path.name, path.read_bytes())))
            urls.append(response.json()["heatmaps"][0]["url"])
        assert_clean_error(small.get(urls[0]), 404)
        assert small.get(urls[1]).status_code == 200


def test_bad_scan_is_422_with_the_clis_error_line(client, classifier, scan_files, tmp_path,
                                                  monkeypatch, capsys):
    good = (scan_files[0].name, scan_files[0].read_bytes())
    response = client.post("/v1/classify", params={"heatmap": "id"},
                           files=upload(good, ("notes.png", b"not an image")))
    message = assert_clean_error(response, 422)
    body = response.json()
    assert [r["status"] for r in body["records"]] == ["ok", "error"]
    assert body["records"][1] == classifier.classify(b"not an image", name="notes.png").to_dict()
    assert body["heatmaps"][0]["url"] and body["heatmaps"][1] is None
    (tmp_path / "notes.png").write_bytes(b"not an image")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli_main(["--json", "--model", str(classifier.model_path), "notes.png"])
    assert capsys.readouterr().err.strip() == f"edge-classify: error: {message}"


def test_pixel_limit_is_refused_before_decoding(client):
    side = int(MAX_PIXELS**0.5) + 1
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    response = client.post("/v1/classify", files=upload(("huge.png", buffer.getvalue())))
    message = assert_clean_error(response, 422)
    assert message == (f"huge.png: image of {side}x{side} pixels exceeds the "
                       f"{MAX_PIXELS:,}-pixel limit")


def test_empty_file_and_folder_names_in_filenames(client, scan_files):
    response = client.post("/v1/classify", files=upload(
        ("../../etc/passwd", scan_files[0].read_bytes()), ("empty.png", b"")))
    assert_clean_error(response, 422)
    records = response.json()["records"]
    assert records[0]["file"] == "passwd" and records[0]["status"] == "ok"
    assert records[1]["error"] == "empty file"


def test_upload_too_large_is_413_by_length_and_by_count(int8_model, scan_files):
    data = scan_files[0].read_bytes()
    with make_client(int8_model, max_upload_bytes=len(data) // 2) as small:
        assert "byte limit" in assert_clean_error(
            small.post("/v1/classify", files=upload(("a.jpg", data))), 413)
        boundary = "lungcnnboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"a.jpg\"\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        chunks = (body[i:i + 4096] for i in range(0, len(body), 4096))  # no Content-Length
        response = small.post("/v1/classify", content=chunks,
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert "byte limit" in assert_clean_error(response, 413)
        assert small.get("/healthz").json()["in_flight"] == 0


def test_too_many_files_and_malformed_requests(int8_model, scan_files):
    data = scan_files[0].read_bytes()
    with make_client(int8_model, max_files=2) as small:
        response = small.post("/v1/classify", files=upload(*[(f"{i}.jpg", data) for i in range(3)]))
        assert assert_clean_error(response, 413) == "more than 2 files in one request"
        assert_clean_error(small.post("/v1/classify", content=b"x",
                                      headers={"content-type": "image/png"}), 415)
        assert_clean_error(small.post("/v1/classify", data={"other": "field"},
                                      files=[("notfiles", ("a", b"a"))]), 400)
        assert_clean_error(small.post("/v1/classify", params={"heatmap": "yes"},
                                      files=upload(("a.jpg", data))), 422)
        assert_clean_error(small.get("/v1/nothing-here"), 404)
        assert_clean_error(small.delete("/v1/classify"), 405)


def test_model_and_health(client, classifier, int8_model):
    model = client.get("/v1/model").json()
    assert model["labels"] == list(classifier.class_names)
    assert model["input_size"] == classifier.input_size
    assert model["quantization"] == classifier.manifest["quantization"] == "int8"
    manifest_bytes = int8_model.with_suffix(".json").read_bytes()
    assert model["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    assert model["model_sha256"] == classifier.manifest["tflite_sha256"]
    assert set(model["training_data"]) >= {"arch", "dataset", "splits"}
    assert model["notice"] == NOTICE
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "model_file": int8_model.name, "in_flight": 0,
                      "capacity": 5}


def test_openapi_schema_documents_the_api(client):
    schema = client.get("/v1/openapi.json").json()
    assert {"/v1/classify", "/v1/heatmap/{heatmap_id}", "/v1/model", "/healthz"} <= set(
        schema["paths"])
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]
    assert "multipart/form-data" in body["content"]
    assert NOTICE in schema["info"]["description"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_page_is_self_contained_and_carries_the_notice(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert NOTICE in response.text
    assert "http://" not in response.text and "https://" not in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_token_is_required_on_every_request(int8_model, scan_files):
    with make_client(int8_model, token=TOKEN) as guarded:
        for path in ("/", "/healthz", "/v1/model", "/v1/openapi.json", "/v1/heatmap/x"):
            response = guarded.get(path)
            assert_clean_error(response, 401)
            assert "Bearer" in response.headers["www-authenticate"]
            assert_clean_error(guarded.get(path, headers={"Authorization": "Bearer wrong"}), 401)
        files = upload(("a.jpg", scan_files[0].read_bytes()))
        assert_clean_error(guarded.post("/v1/classify", files=files), 401)
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert guarded.post("/v1/classify", files=files, headers=bearer).status_code == 200
        assert guarded.get("/", auth=("anyone", TOKEN)).status_code == 200
        assert_clean_error(guarded.get("/", auth=("anyone", "wrong")), 401)


class _BlockingClassifier(Classifier):
    """Waits for `release` before classifying: holds the only worker deterministically."""

    def __init__(self, model, started: threading.Event, release: threading.Event):
        super().__init__(model)
        self._started, self._release = started, release

    def classify(self, scan, *, name=None):
        self._started.set()
        assert self._release.wait(60), "test did not release the worker"
        return super().classify(scan, name=name)


def test_full_queue_is_503_and_frees_up(int8_model, scan_files):
    started, release = threading.Event(), threading.Event()
    app = create_app(ServeSettings(model=int8_model, workers=1, queue_limit=0),
                     lambda: _BlockingClassifier(int8_model, started, release))
    files = upload(("a.jpg", scan_files[0].read_bytes()))
    with TestClient(app, base_url=BASE_URL) as test_client:
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(
            response=test_client.post("/v1/classify", files=files)))
        worker.start()
        try:
            assert started.wait(60)
            busy = test_client.post("/v1/classify", files=files)
            assert "busy" in assert_clean_error(busy, 503)
            assert busy.headers["retry-after"] == "1"
            assert test_client.get("/healthz").json()["in_flight"] == 1
        finally:
            release.set()
            worker.join(60)
        assert first["response"].status_code == 200
        deadline = time.monotonic() + 10
        while app.state.pool.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert test_client.post("/v1/classify", files=files).status_code == 200


class _FailingClassifier(Classifier):
    def classify(self, scan, *, name=None):
        raise RuntimeError("secret detail\nTraceback (most recent call last):")


def test_unexpected_failure_is_a_generic_500(int8_model, scan_files):
    app = create_app(ServeSettings(model=int8_model), lambda: _FailingClassifier(int8_model))
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as test_client:
        response = test_client.post("/v1/classify", files=upload(("a.jpg", b"x")))
        message = assert_clean_error(response, 500)
        assert "secret" not in response.text and "internal error" in message
        assert json.loads(response.text) == {"error": message}


def test_dicom_upload_gives_the_classifiers_record(client, classifier, dicom_writer, scan_files,
                                                   tmp_path):
    with Image.open(scan_files[0]) as image:
        pixels = np.asarray(image.convert("L"))
    data = dicom_writer(tmp_path / "scan.dcm", pixels).read_bytes()
    response = client.post("/v1/classify", files=upload(("scan.dcm", data)))
    assert response.status_code == 200, response.text
    assert response.json()["records"] == [classifier.classify(data, name="scan.dcm").to_dict()]


async def _slow_body():
    yield b"--b\r\n"
    await asyncio.sleep(5)
    yield b"never"


def test_a_body_that_does_not_arrive_in_time_is_408():
    headers = {"content-type": "multipart/form-data; boundary=b"}
    with pytest.raises(UploadError) as refused:
        with ReceiveBudget(1000).account() as held:
            asyncio.run(read_uploads(headers, _slow_body(), UploadLimits(1000, 1, timeout=0.2),
                                     held))
    assert refused.value.status == 408 and refused.value.message == "upload not received within 0.2 s"
