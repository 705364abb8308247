"""The ASGI app of `edge-classify serve`: the page at `/`, the JSON API under `/v1/`.

Every record comes from `Classifier.classify(upload_bytes, name=filename).to_dict()`, the
same call and the same fields as an `edge-classify --json` line. Errors are JSON bodies
`{"error": "<one line>"}` with a 4xx status (503 when the queue is full); an unexpected
failure is a 500 with a generic line (details go to the server log, never to the client).
"""

from __future__ import annotations

import asyncio
import html
from contextlib import asynccontextmanager
from importlib import metadata, resources
from typing import Annotated, Callable, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from lungcnn.edge.api import Classifier
from lungcnn.edge.report import NOTICE
from lungcnn.edge.serve.auth import TokenGate
from lungcnn.edge.serve.guard import SiteGuard
from lungcnn.edge.serve.heatmaps import ID_PATTERN, HeatmapStore, heatmap_entry
from lungcnn.edge.serve.info import model_info
from lungcnn.edge.serve.pool import Busy, InferencePool
from lungcnn.edge.serve.settings import ServeSettings
from lungcnn.edge.serve.uploads import (
    FILES_FIELD,
    ReceiveBudget,
    Upload,
    UploadError,
    UploadLimits,
    read_uploads,
)

HeatmapMode = Literal["none", "id", "inline"]
# The page loads nothing but itself, its API calls and the images it is given.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
               "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; "
               "base-uri 'none'; frame-ancestors 'none'")
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
CLASSIFY_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": [FILES_FIELD], "properties": {FILES_FIELD: {
        "type": "array", "items": {"type": "string", "format": "binary"},
        "description": "Scans: PNG, JPEG, BMP, TIFF, WebP or DICOM, recognised by content."}}}}}}}
ERROR_SCHEMA = {"content": {"application/json": {"example": {"error": "one line"}}}}


def create_app(settings: ServeSettings,
               make_classifier: Callable[[], Classifier] | None = None) -> FastAPI:
    """Load the model (one Classifier per worker) and build the app; raises
    `edge.runtime.ModelError` for an unusable model."""
    make = make_classifier or (lambda: Classifier(settings.model, threads=settings.threads))
    pool = InferencePool(make, settings.workers, settings.queue_limit)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.close()

    app = FastAPI(title="lungcnn edge-classify serve", version=_version(),
                  description=f"Chest X-ray classification on the device. {NOTICE}",
                  openapi_url="/v1/openapi.json", docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    app.state.pool = pool
    _add_error_handlers(app)
    _add_routes(app, settings, pool, HeatmapStore(settings.heatmap_cache))
    if settings.token is not None:
        app.add_middleware(TokenGate, token=settings.token)
    app.add_middleware(SiteGuard, bound_host=settings.host,
                       allowed_hosts=settings.allowed_hosts,
                       allowed_origins=settings.allowed_origins)
    return app


def _add_routes(app: FastAPI, settings: ServeSettings, pool: InferencePool,
                store: HeatmapStore) -> None:
    """Only /v1/classify runs in the inference pool; the other routes never block."""
    info = model_info(pool.first)
    page = render_page(settings)
    limits = UploadLimits(settings.max_upload_bytes, settings.max_files,
                          settings.upload_timeout)
    receiving = ReceiveBudget(settings.capacity * settings.max_upload_bytes)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={**NO_STORE, "Content-Security-Policy": PAGE_POLICY})

    @app.get("/healthz", summary="Liveness and load")
    async def healthz() -> dict:
        return {"status": "ok", "model_file": info["model_file"], "in_flight": pool.in_flight,
                "capacity": pool.capacity}

    @app.get("/v1/model", summary="The loaded model: labels, input, quantization, training "
                                  "data and manifest hash")
    async def model() -> dict:
        return info

    @app.post("/v1/classify", summary="Classify uploaded scans", openapi_extra=CLASSIFY_BODY,
              responses={200: {"description": "Every scan classified"},
                         422: {"description": "Some scans could not be classified; their "
                                              "records carry the reason", **ERROR_SCHEMA},
                         413: ERROR_SCHEMA, 415: ERROR_SCHEMA, 503: ERROR_SCHEMA})
    async def classify(request: Request, heatmap: Annotated[HeatmapMode, Query(
            description="none; id: a heatmap id and URL per record (GET /v1/heatmap/{id}); "
                        "inline: the PNG as base64")] = "none") -> JSONResponse:
        """`records` are `edge-classify --json` records (same fields, same code path), in
        upload order; `heatmaps[i]` belongs to `records[i]`. Status 200 when every scan was
        classified, 422 when some were not (`error`: the first failure as the CLI prints it;
        the other records are still there)."""
        with receiving.account() as held:
            uploads = await read_uploads(request.headers, request.stream(), limits, held)
            pool.admit()  # only now: a slow upload holds no worker slot
            job = pool.run(lambda classifier: classify_uploads(classifier, uploads, heatmap,
                                                               store))
            try:
                records, heatmaps = await asyncio.wait_for(asyncio.shield(job),
                                                           settings.request_timeout)
            except asyncio.TimeoutError:
                raise Busy(f"classification not done within {settings.request_timeout:g} s; "
                           "retry later") from None
        return classify_response(records, heatmaps)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204, headers=NO_STORE)

    @app.get("/v1/heatmap/{heatmap_id}", summary="A heatmap PNG made by /v1/classify",
             response_class=Response,
             responses={200: {"content": {"image/png": {}}}, 404: ERROR_SCHEMA})
    async def get_heatmap(heatmap_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> Response:
        png = store.get(heatmap_id)
        if png is None:
            raise HTTPException(404, "no such heatmap (expired from the cache or never made)")
        return Response(png, media_type="image/png", headers=NO_STORE)


def classify_uploads(classifier: Classifier, uploads: list[Upload], mode: HeatmapMode,
                     store: HeatmapStore) -> tuple[list[dict], list[dict | None]]:
    """Runs on a worker thread: one record (and heatmap entry) per upload, in order."""
    records, heatmaps = [], []
    for upload in uploads:
        result = classifier.classify(upload.data, name=upload.filename)
        records.append(result.to_dict())
        heatmaps.append(heatmap_entry(classifier, upload.data, result, mode, store))
    return records, heatmaps


def classify_response(records: list[dict], heatmaps: list[dict | None]) -> JSONResponse:
    failures = [f"{r['file']}: {r['error']}" for r in records if r["status"] == "error"]
    error = None
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        error = failures[0] + more
    body = {"records": records, "heatmaps": heatmaps, "error": error, "notice": NOTICE}
    return JSONResponse(body, status_code=422 if failures else 200, headers=NO_STORE)


def render_page(settings: ServeSettings) -> str:
    template = resources.files("lungcnn.edge.serve").joinpath("page.html").read_text("utf-8")
    return (template.replace("__NOTICE__", html.escape(NOTICE))
            .replace("__MAX_FILES__", str(settings.max_files))
            .replace("__MAX_UPLOAD_BYTES__", str(settings.max_upload_bytes)))


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status,
                        headers={**NO_STORE, **(headers or {})})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(_request, error: UploadError):
        return error_response(error.status, error.message)

    @app.exception_handler(Busy)
    async def busy(_request, error: Busy):
        return error_response(503, str(error), {"Retry-After": "1"})

    @app.exception_handler(HTTPException)
    async def http_error(_request, error: HTTPException):
        return error_response(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, error: RequestValidationError):
        problems = ["{}: {}".format(".".join(str(part) for part in e.get("loc", ())),
                                    e.get("msg", "invalid")) for e in error.errors()]
        return error_response(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(_request, _error: Exception):
        # Starlette still re-raises it, so the server log gets the traceback.
        return error_response(500, "internal error; the server log has the details")


def _version() -> str:
    try:
        return metadata.version("lungcnn")
    except metadata.PackageNotFoundError:
        return "unknown"
