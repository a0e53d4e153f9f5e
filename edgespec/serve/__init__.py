"""`edgespec serve`: an OpenAI-compatible local server around one loaded pair (needs the `serve` extra).

Builds on the runtime only: the CLI loads the pipeline, `create_app` wraps it, `serve` runs it.
"""

from edgespec.serve.app import create_app
from edgespec.serve.server import running, serve

__all__ = ["create_app", "running", "serve"]
