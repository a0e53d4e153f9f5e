"""`edgespec serve`: load one pair and answer OpenAI-style requests on a local port."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from edgespec.cli.run import DraftDevice, FastKernels, ModelOption, NoDraft, TargetDevice, err, load_pipeline
from edgespec.runtime.errors import EdgespecError


def serve(
    model: Path = ModelOption, target_device: str = TargetDevice, draft_device: str = DraftDevice,
    no_draft: bool = NoDraft, fast_kernels: bool = FastKernels,
    host: str = typer.Option("127.0.0.1", help="Address to bind: loopback by default (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    api_key: str = typer.Option(None, envvar="EDGESPEC_API_KEY", show_envvar=True,
                                help="Require 'Authorization: Bearer <key>' on every request."),
    queue: int = typer.Option(8, "--queue", min=0, help="Requests that may wait behind the running one; past "
                              "that, 429 with Retry-After."),
    model_name: str = typer.Option(None, help="The model id clients send (default: the pair's name)."),
) -> None:
    """Serve the pair over OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models) and /health;
    one request at a time, in arrival order. Needs the `serve` extra (Starlette, uvicorn)."""
    try:
        from edgespec.serve import create_app, serve as run_server
    except ImportError as exc:
        missing = (exc.name or "a module").split(".")[0]
        raise EdgespecError(f"edgespec serve needs the serve extra ({missing} is missing): "
                            f"pip install 'edgespec[serve]'") from None
    if not api_key and not _is_loopback(host):
        err.print(f"[yellow]warning: serving on {host} without --api-key: anyone who reaches it can use it[/yellow]")
    pipe = load_pipeline(model, target_device, draft_device, no_draft, fast_kernels=fast_kernels)
    app = create_app(pipe, api_key=api_key, max_waiting=queue, name=model_name)
    err.print(f"[dim]model id '{app.state.api.model.id}'; base_url http://{host}:{port}/v1"
              + ("; API key required" if api_key else "") + "[/dim]")
    run_server(app, host=host, port=port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: cannot tell, so warn
        return False
