"""Reading a multipart upload into memory, within bounds, before anything decodes it.

The body is streamed through python-multipart's parser as it arrives: the declared
Content-Length and the bytes actually received are both held to the limit, and no part is
ever spooled to disk.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import AsyncIterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

FILES_FIELD = "files"


class UploadError(Exception):
    """A request the server refuses before classifying anything: an HTTP status and a
    one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name it was sent with (a label only) and its bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_files: int
    timeout: float


class ReceiveBudget:
    """The bytes of request bodies held at once, counted as they arrive (a slow client holds
    only what it has sent): beyond the budget, a request is refused with 503."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0

    @contextmanager
    def account(self):
        """A `Held` for one request; what it took is given back when the block ends."""
        held = Held(self)
        try:
            yield held
        finally:
            self.held -= held.nbytes


class Held:
    def __init__(self, budget: ReceiveBudget):
        self._budget = budget
        self.nbytes = 0

    def take(self, nbytes: int) -> None:
        if self._budget.held + nbytes > self._budget.limit:
            raise UploadError(503, "server busy: too many uploads arriving; retry later")
        self._budget.held += nbytes
        self.nbytes += nbytes


async def read_uploads(headers, body: AsyncIterator[bytes], limits: UploadLimits,
                       held: Held) -> list[Upload]:
    """The `files` parts of a multipart/form-data request, each byte `held` as it arrives;
    raises UploadError."""
    boundary = _boundary(headers.get("content-type", ""))
    _check_declared_length(headers.get("content-length"), limits.max_bytes)
    collector = _PartCollector(limits.max_files)
    try:
        parser = MultipartParser(boundary, collector.callbacks(), max_size=limits.max_bytes)
        await asyncio.wait_for(_feed(parser, body, limits.max_bytes, held), limits.timeout)
    except asyncio.TimeoutError:
        raise UploadError(408, f"upload not received within {limits.timeout:g} s") from None
    except FormParserError as error:
        raise UploadError(400, f"malformed multipart body ({error})") from None
    if not collector.uploads:
        raise UploadError(400, f"no files: send them as multipart '{FILES_FIELD}' parts")
    return collector.uploads


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(415, "expected a multipart/form-data upload "
                               f"with one or more '{FILES_FIELD}' parts")
    return boundary


def _check_declared_length(length: str | None, max_bytes: int) -> None:
    if length is None:
        return
    if not length.isdigit():
        raise UploadError(400, "invalid Content-Length")
    if int(length) > max_bytes:
        raise UploadError(413, _too_large(max_bytes))


async def _feed(parser: MultipartParser, body: AsyncIterator[bytes], max_bytes: int,
                held: Held) -> None:
    async for chunk in body:
        if held.nbytes + len(chunk) > max_bytes:
            raise UploadError(413, _too_large(max_bytes))
        held.take(len(chunk))
        parser.write(chunk)
    parser.finalize()


def _too_large(max_bytes: int) -> str:
    return f"upload larger than the {max_bytes:,}-byte limit"


class _PartCollector:
    """python-multipart callbacks that keep the `files` parts in memory."""

    def __init__(self, max_files: int):
        self.uploads: list[Upload] = []
        self._max_files = max_files
        self._reset()

    def _reset(self) -> None:
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = bytearray(), bytearray()
        self._data: bytearray | None = None
        self._filename = ""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._reset,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _header_end(self) -> None:
        self._headers[bytes(self._field).strip().lower()] = bytes(self._value).strip()
        self._field, self._value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name", b"").decode("utf-8", "replace") != FILES_FIELD:
            return  # other form fields are ignored, and their data not kept
        if len(self.uploads) >= self._max_files:
            raise UploadError(413, f"more than {self._max_files} files in one request")
        self._filename = _label(options.get(b"filename", b""), len(self.uploads) + 1)
        self._data = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is not None:
            self._data.extend(data[start:end])

    def _part_end(self) -> None:
        if self._data is not None:
            self.uploads.append(Upload(self._filename, bytes(self._data)))
        self._reset()


def _label(raw_filename: bytes, number: int) -> str:
    """The file's own name, without any folders the client sent: it only labels the record."""
    name = raw_filename.decode("utf-8", "replace").replace("\\", "/")
    return PurePosixPath(name).name or f"upload-{number}"
