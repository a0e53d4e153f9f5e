"""Run the app with uvicorn: in the foreground (`edgespec serve`), or on a thread (tests, measurements)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

# A stream still running at Ctrl-C gets this long to end before it is cut (its generation then stops).
GRACEFUL_S = 3


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACEFUL_S)


@contextmanager
def running(app: Starlette, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Serve `app` on a thread for the duration of the block; yields its base URL (port 0: a free port)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                           timeout_graceful_shutdown=GRACEFUL_S))
    thread = threading.Thread(target=server.run, name="edgespec-serve", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the server did not start on {host}:{port}")
            time.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
