"""How a server runs: what it binds, which model, and the bounds that keep it safe."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lungcnn.edge.decode import ScanError, open_scan_file

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_TOKEN_FILE = 4096


class SettingsError(ValueError):
    """A server option that cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` needs. The bounds together cap memory: at most
    `workers + queue_limit` uploads of `max_upload_bytes` are held at once (counted as
    their bytes arrive, whether classifying or still arriving), plus `heatmap_cache` PNGs."""

    model: Path | None = None  # None: the bundled model
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = field(default=None, repr=False)
    workers: int = 1  # inference threads, each with its own interpreter
    threads: int | None = None  # interpreter threads per worker
    queue_limit: int = 4  # admitted requests waiting for a worker; beyond: 503
    max_upload_bytes: int = 32 * 1024 * 1024  # the whole request body
    max_files: int = 16  # files in one request
    heatmap_cache: int = 32  # heatmap PNGs kept for GET /v1/heatmap/{id}
    upload_timeout: float = 60.0  # seconds to receive one request body
    max_connections: int = 64  # uvicorn's limit_concurrency: beyond it, 503
    header_timeout: float = 10.0  # seconds to receive a request's line and headers
    request_timeout: float = 30.0  # seconds a classification may take before a 503
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides the bound address
    allowed_origins: tuple[str, ...] = ()  # other sites whose pages may POST here

    def __post_init__(self) -> None:
        for name in ("workers", "max_upload_bytes", "max_files", "heatmap_cache",
                     "max_connections"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if self.queue_limit < 0:
            raise SettingsError("queue_limit must be 0 or more")
        for name in ("upload_timeout", "header_timeout", "request_timeout"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")

    @property
    def capacity(self) -> int:
        """Requests admitted at once: running plus waiting."""
        return self.workers + self.queue_limit

    @property
    def loopback_only(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")


def read_token(path: Path) -> str:
    """The bearer token in `path` (surrounding whitespace removed); raises SettingsError."""
    try:
        with open_scan_file(path) as handle:  # a regular file: a FIFO or a device never blocks
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read(_MAX_TOKEN_FILE + 1).decode("utf-8").strip()
    except ScanError as error:
        raise SettingsError(f"--token-file {path}: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"--token-file {path}: unreadable ({error})") from None
    if len(text) > _MAX_TOKEN_FILE:
        raise SettingsError(f"--token-file {path}: longer than {_MAX_TOKEN_FILE} bytes")
    if not text or any(character.isspace() for character in text):
        raise SettingsError(f"--token-file {path}: must hold one token without spaces")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        raise SettingsError(f"--token-file {path}: readable by other users; chmod 600 it")
    return text
