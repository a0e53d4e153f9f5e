"""`--api-key`: every request must carry `Authorization: Bearer <key>`, or gets a 401 error object."""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from edgespec.serve.errors import unauthorized


class BearerAuth:
    """Plain ASGI middleware (not BaseHTTPMiddleware, which buffers and delays streamed responses)."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.authorized(scope):
            error = unauthorized()
            await JSONResponse(error.body(), error.status, headers=error.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def authorized(self, scope: Scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        # compare_digest: the time taken does not tell how much of a guessed key was right.
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
