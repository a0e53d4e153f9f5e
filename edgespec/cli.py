"""The `edgespec` command line."""

from __future__ import annotations

import importlib
import sys

import typer

from edgespec.errors import EdgespecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Speculative decoding on OpenVINO: export, generate, chat, bench, train drafts.")


def _register(module: str, attr: str, name: str, group: bool = False) -> None:
    """Commands from the export/bench/draft packages, skipped when their package is absent."""
    try:
        target = getattr(importlib.import_module(module), attr)
    except ImportError:
        return
    if group:
        app.add_typer(target, name=name)
    else:
        app.command(name)(target)


from edgespec import cli_run  # noqa: E402  (generate, chat)

app.command("generate")(cli_run.generate)
app.command("chat")(cli_run.chat)
_register("edgespec_export.cli", "export_command", "export")
_register("edgespec_bench.cli", "bench_command", "bench")
_register("edgespec_models.fastdraft.cli", "app", "draft", group=True)


def main() -> None:
    try:
        app()
    except EdgespecError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
