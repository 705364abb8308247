"""The optional bearer token, required on every request when set (`--token-file`).

Scripts send `Authorization: Bearer TOKEN`. A browser cannot add that header to a page it
navigates to, so the token is also accepted as the password of HTTP Basic authentication
(any user name): the 401 challenge makes the browser ask for it once and send it with every
request of the page. Tokens are compared in constant time and never accepted in a URL.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# One header per scheme: browsers do not reliably split several challenges in one header.
CHALLENGES = ('Bearer realm="lungcnn"', 'Basic realm="lungcnn", charset="UTF-8"')


class TokenGate:
    """ASGI middleware: 401 for any HTTP request without the token."""

    def __init__(self, app: ASGIApp, token: str):
        self._app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorized(scope):
            await self._app(scope, receive, send)
            return
        response = JSONResponse({"error": "missing or wrong token: send Authorization: "
                                          "Bearer TOKEN"}, status_code=401)
        for challenge in CHALLENGES:
            response.headers.append("WWW-Authenticate", challenge)
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        given = presented_token(dict(scope["headers"]).get(b"authorization", b""))
        # compare_digest takes time independent of where the bytes differ
        return given is not None and hmac.compare_digest(given, self._token)


def presented_token(header: bytes) -> bytes | None:
    """The token in an Authorization header value (Bearer, or Basic's password)."""
    scheme, _, credentials = header.strip().partition(b" ")
    credentials = credentials.strip()
    if scheme.lower() == b"bearer" and credentials:
        return credentials
    if scheme.lower() == b"basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return None
        _, separator, password = decoded.partition(b":")
        return password if separator else None
    return None
