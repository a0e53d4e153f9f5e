"""The `edgespec` command line: the one place that imports every layer (runtime, export, draft, bench, serve)."""

from __future__ import annotations

import sys

import typer

from edgespec.bench.cli import bench_command
from edgespec.cli import run, serve
from edgespec.draft.cli import app as draft_app
from edgespec.export.cli import export_command
from edgespec.runtime.errors import EdgespecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Speculative decoding on OpenVINO: export, generate, chat, serve, bench, train drafts.")
app.command("generate")(run.generate)
app.command("chat")(run.chat)
app.command("serve")(serve.serve)
app.command("export")(export_command)
app.command("bench")(bench_command)
app.add_typer(draft_app, name="draft")


def main() -> None:
    try:
        app()
    except EdgespecError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
