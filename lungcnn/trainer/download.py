"""Download one URL into a `.part` file, with bounded timeouts, size and retries.

The caller owns the `.part` path (next to the final file) and moves it into place only after
verifying it; on any failure, interruption included, the `.part` file is removed here.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

USER_AGENT = "lungcnn-data-fetch"
_CHUNK = 1 << 16
# Statuses worth another try; every other HTTP error (404, 403, ...) is final.
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(Exception):
    """A URL that could not be downloaded (one-line reason)."""


@dataclass(frozen=True)
class DownloadPolicy:
    timeout: float = 30.0  # seconds, for the connection and for each read
    max_seconds: float = 600.0  # for one whole attempt, so a trickling server cannot hold on
    attempts: int = 3
    backoff: float = 1.0  # seconds before the second attempt, doubled for each next one
    max_bytes: int = 256 * 2**20  # no original file of a dataset comes near this


class _Retryable(Exception):
    pass


def download(url: str, part: Path, policy: DownloadPolicy = DownloadPolicy()) -> str:
    """Write the body of URL to PART; return its SHA-256. Raises DownloadError."""
    last = ""
    try:
        for attempt in range(policy.attempts):
            if attempt:
                time.sleep(policy.backoff * 2 ** (attempt - 1))
            try:
                return _download_once(url, part, policy)
            except _Retryable as error:
                last = str(error)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.unlink(missing_ok=True)
    tries = f" (after {policy.attempts} attempts)" if policy.attempts > 1 else ""
    raise DownloadError(f"{last}{tries}")


def _download_once(url: str, part: Path, policy: DownloadPolicy) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=policy.timeout) as response:
            return _save_body(response, part, policy)
    except urllib.error.HTTPError as error:
        reason = f"HTTP {error.code} {error.reason}"
        if error.code in _TRANSIENT_STATUSES:
            raise _Retryable(reason) from None
        raise DownloadError(reason) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, FileNotFoundError):  # a file:// mirror without the file
            raise DownloadError("no such file") from None
        raise _Retryable(f"cannot connect ({error.reason})") from None
    except (OSError, http.client.HTTPException) as error:  # timeouts, resets, short bodies
        raise _Retryable(f"transfer failed ({type(error).__name__}: {error})") from None


def _save_body(response, part: Path, policy: DownloadPolicy) -> str:
    expected = response.headers.get("Content-Length")
    expected = int(expected) if expected and expected.isdigit() else None
    if expected is not None and expected > policy.max_bytes:
        raise DownloadError(f"file too large ({expected} bytes)")
    digest, size = hashlib.sha256(), 0
    deadline = time.monotonic() + policy.max_seconds
    with open(part, "wb") as out:
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > policy.max_bytes:
                raise DownloadError(f"file too large (over {policy.max_bytes} bytes)")
            if time.monotonic() > deadline:
                raise _Retryable(f"too slow (not done after {policy.max_seconds:g} s)")
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if expected is not None and size != expected:
        raise _Retryable(f"transfer cut short ({size} of {expected} bytes)")
    return digest.hexdigest()
