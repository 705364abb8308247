"""`edge-classify serve`: start the web page and HTTP API on this device."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.edge.errors import EXIT_USAGE, NOTICE, fail, run_app
from lungcnn.edge.runtime import ModelError
from lungcnn.edge.serve.settings import ServeSettings, SettingsError, read_token
from lungcnn.edge.workers import MAX_THREADS, MAX_WORKERS

PROG = "edge-classify serve"

HELP = f"""Serve a web page (/) and a JSON API (/v1/classify, /v1/heatmap/ID, /v1/model, /healthz; schema at /v1/openapi.json) that classify uploaded chest X-ray scans with the same code and the same records as `edge-classify --json`.

Binds 127.0.0.1 unless --host says otherwise. With --token-file every request needs `Authorization: Bearer TOKEN` (a browser asks for it: any user name, the token as password). Uploads stay in memory; when all workers and queue slots are taken, requests get 503.

Exit codes: 0 stopped with Ctrl-C (SIGINT; on SIGTERM it shuts down just as cleanly, then ends by that signal); 1 the server could not start (say the port is taken); 2 usage or model error.

{NOTICE}
"""

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command(help=HELP)
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 serves the network.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    model: Annotated[Path | None, typer.Option(
        "--model", "-m", help="A .tflite model with its manifest beside it.",
        show_default="the bundled model")] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding a token that every request must present (chmod 600).",
        show_default="no token")] = None,
    workers: Annotated[int, typer.Option(
        min=1, max=MAX_WORKERS, help="Inference threads, each with its own copy of the model.")]
    = 1,
    threads: Annotated[int | None, typer.Option(
        min=1, max=MAX_THREADS, help="Interpreter threads per worker.",
        show_default="the runtime's choice")]
    = None,
    queue_limit: Annotated[int, typer.Option(
        min=0, help="Requests that may wait for a worker; more get 503.")] = 4,
    max_upload_mb: Annotated[float, typer.Option(
        min=0.001, help="Largest request body in MiB (all its files together).")] = 32.0,
    max_files: Annotated[int, typer.Option(min=1, help="Files in one request.")] = 16,
    heatmap_cache: Annotated[int, typer.Option(
        min=1, help="Heatmap PNGs kept in memory for GET /v1/heatmap/ID.")] = 32,
    max_connections: Annotated[int, typer.Option(
        min=1, help="Open connections; more get 503.")] = 64,
    allow_host: Annotated[list[str] | None, typer.Option(
        metavar="NAME", help="A host name requests may be addressed to besides --host "
        "(repeatable); others get 400, against DNS rebinding.", show_default=False)] = None,
    allow_origin: Annotated[list[str] | None, typer.Option(
        metavar="ORIGIN", help="Another site (https://name[:port]) whose pages may POST "
        "scans here (repeatable); other cross-site POSTs get 403.", show_default=False)]
    = None,
) -> None:
    try:
        import uvicorn

        from lungcnn.edge.serve.app import create_app
        from lungcnn.edge.serve.protocol import server_options
    except ImportError as error:
        _fail(f"the server needs the serve extra: pip install 'lungcnn[serve]' "
              f"({error.name} is missing)")
    try:
        settings = ServeSettings(
            model=model, host=host, port=port,
            token=read_token(token_file) if token_file else None,
            workers=workers, threads=threads, queue_limit=queue_limit,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_files=max_files,
            heatmap_cache=heatmap_cache, max_connections=max_connections,
            allowed_hosts=tuple(allow_host or ()), allowed_origins=tuple(allow_origin or ()))
        application = create_app(settings)
    except (SettingsError, ModelError) as error:
        _fail(str(error))
    if not settings.loopback_only and settings.token is None:
        _print(f"warning: serving {host} without --token-file: anyone who can reach this "
               "device can use it")
    _print(f"model {application.state.pool.first.model_path}; {NOTICE}")
    uvicorn.run(application, **server_options(settings))


def _fail(message: str):
    fail(message, EXIT_USAGE, PROG)


def _print(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv, PROG)
