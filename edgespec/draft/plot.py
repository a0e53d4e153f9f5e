"""Training curves of a draft: loss and held-out greedy match over trained tokens, one panel per stage."""

from __future__ import annotations

from pathlib import Path

from edgespec.runtime.errors import EdgespecError
from edgespec.draft.train import read_log


def plot_training(logs: list[Path], out: Path) -> None:
    """Write a PNG with one panel per log.jsonl (stages in order, each named by its run folder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [(path.parent.name, read_log(path)) for path in logs]
    if not any(rows for _, rows in stages):
        raise EdgespecError("no training log rows to plot")
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], stages):
        _stage_panel(ax, name, rows)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _stage_panel(ax, name: str, rows: list[dict]) -> None:
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "val_loss" in r]
    ax.plot([r["tokens"] / 1e3 for r in train], [r["loss"] for r in train], alpha=0.4, label="train loss")
    ax.plot([r["tokens"] / 1e3 for r in evals], [r["val_loss"] for r in evals], "o-", label="held-out loss")
    ax.set_xlabel("trained tokens (thousands)")
    ax.set_ylabel("cross-entropy")
    ax.set_title(name)
    acc = ax.twinx()
    acc.plot([r["tokens"] / 1e3 for r in evals], [r["acceptance"] for r in evals], "s--", color="tab:green",
             label="held-out greedy match")
    acc.set_ylabel("greedy match rate")
    acc.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()[0] + acc.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
