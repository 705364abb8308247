"""How uvicorn serves the app: its options, and its HTTP/1.1 protocol (h11) with a deadline
on each request's headers.

uvicorn times out idle keep-alive connections, but not a client that sends its request
line and headers a byte at a time: twenty of those held every connection slot. A request
whose headers are not complete within the deadline has its connection closed.
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from lungcnn.edge.serve.settings import ServeSettings

KEEP_ALIVE_SECONDS = 5


def server_options(settings: ServeSettings) -> dict:
    """The keyword arguments `uvicorn.run(app, ...)` (and `uvicorn.Config`) serve with."""
    return {"host": settings.host, "port": settings.port, "log_level": "info",
            "server_header": False, "limit_concurrency": settings.max_connections,
            "timeout_keep_alive": KEEP_ALIVE_SECONDS,
            "http": protocol_with_header_deadline(settings.header_timeout)}


def protocol_with_header_deadline(seconds: float) -> type[H11Protocol]:
    """An H11Protocol class (for `uvicorn.run(http=...)`) closing connections whose request
    headers take longer than `seconds`, from the connection or the previous response."""

    class HeaderDeadline(H11Protocol):
        _deadline = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_late(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # the request line or headers are not all there

    return HeaderDeadline
