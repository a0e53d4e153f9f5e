"""`edgespec export`: build a target/draft pair folder from GGUF files, HF models, IR folders or presets.

Module-level imports stay light (typer/rich): heavy libraries load inside the export routes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgespec.runtime.errors import EdgespecError

from .compress import check_weight_format


def _list_presets(console: Console) -> None:
    from edgespec.export.catalogue import default_preset_name, load_catalogue

    table = Table(title="edgespec model presets")
    for column in ("preset", "target", "draft", "weights"):
        table.add_column(column)
    default = default_preset_name()
    for preset in load_catalogue().values():
        draft = preset.draft.name if preset.draft else "-"
        if preset.draft and not preset.usable_draft:
            draft += " (not shipped yet: target only)"
        weights = f"{preset.target.weights}/{preset.draft.weights if preset.draft else '-'}"
        table.add_row(preset.name + (" (default)" if preset.name == default else ""), preset.target.name, draft,
                      weights)
    console.print(table)


def export_command(
    target: Optional[str] = typer.Option(None, "--target", "-t",
                                         help="Target model: .gguf file, HF folder, HF id, IR folder or preset name."),
    draft: Optional[str] = typer.Option(None, "--draft", "-d", help="Draft model (same kinds as --target)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Pair folder to write (default: ./<name>)."),
    target_weights: Optional[str] = typer.Option(
        None, "--target-weights", help="int4 (symmetric, group 128), int8, fp16 or keep (default: int4)."),
    draft_weights: Optional[str] = typer.Option(None, "--draft-weights", help="int4, int8, fp16 or keep (default: int8)."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Catalogue preset (see --list-presets)."),
    no_draft: bool = typer.Option(False, "--no-draft", help="Export the target only."),
    via: str = typer.Option("auto", "--via", help="Route: auto, genai (torch-free GGUF) or transformers."),
    fetch: bool = typer.Option(True, "--fetch/--no-fetch", help="Download preset weights that are not cached."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Download cache (default: ~/.cache/edgespec)."),
    list_presets: bool = typer.Option(False, "--list-presets", help="Show the catalogue and exit."),
) -> None:
    """Export a target (and draft) model to OpenVINO IR as an edgespec pair folder."""
    from edgespec.export.catalogue import get_preset, load_catalogue

    from .exporter import export_pair, resolve_source
    from .presets import model_source

    console = Console(stderr=True)
    if list_presets:
        _list_presets(console)
        return
    if target and not preset and not Path(target).expanduser().exists() and target in load_catalogue():
        preset, target = target, None  # `--target smollm2` means the preset
    spec = get_preset(preset) if preset else None
    if spec is None and not target:
        raise EdgespecError("nothing to export: give --target (a .gguf file, HF folder or id) or --preset NAME")
    t_weights = check_weight_format(target_weights or (spec.target.weights if spec and not target else "int4"),
                                    "target weights")
    d_default = spec.draft.weights if spec and spec.draft and not draft else "int8"
    d_weights = check_weight_format(draft_weights or d_default, "draft weights")

    target_source = resolve_source(target) if target else model_source(spec.target, cache_dir, fetch, console)
    draft_source = None
    if draft and not no_draft:
        draft_source = resolve_source(draft)
    elif spec and not no_draft:
        if spec.usable_draft:
            draft_source = model_source(spec.usable_draft, cache_dir, fetch, console)
        elif spec.draft:
            console.print(f"[yellow]note:[/] preset {spec.name}: the draft {spec.draft.name} is not shipped yet "
                          f"({spec.draft.shipped_dir}); exporting the target only")
    name = spec.name if spec else Path(target_source.label).stem
    out = out or Path.cwd() / name
    start = time.perf_counter()
    path = export_pair(target_source, draft_source, out, t_weights, d_weights, name=name, via=via, console=console)
    console.print(f"[bold green]pair ready[/] {path} ({time.perf_counter() - start:.0f} s)  "
                  f"try: edgespec generate --model {path} \"Hello\"")
