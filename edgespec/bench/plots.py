"""PNG figures from a results dict. matplotlib is imported here only, when plotting."""

from __future__ import annotations

from pathlib import Path

from edgespec.runtime.errors import EdgespecError
from edgespec.bench.modes import LABELS

COLORS = {"genai-target": "#9e9e9e", "genai-spec": "#1f77b4", "genai-spec2": "#17becf",
          "edgespec-target": "#555555", "edgespec-spec": "#d62728", "edgespec-spec2": "#ff7f0e",
          "naive-ensemble": "#8c6d31", "cos-ensemble": "#2ca02c", "cos-ensemble-alt": "#98df8a",
          "naive-contrastive": "#7b4173", "cos-contrastive": "#9467bd", "cos-contrastive-alt": "#c5b0d5",
          "llamacpp-target": "#8c564b", "llamacpp-default": "#5c3a2e", "llamacpp-lookup": "#c49c94",
          "edgespec-llamacpp-target": "#bcbd22", "edgespec-llamacpp": "#e377c2", "edgespec-auto": "#7f7f7f",
          "edgespec-tree-auto": "#17becf", "edgespec-tree16": "#1f77b4", "edgespec-chain16": "#aec7e8",
          "edgespec-tree8": "#393b79", "edgespec-chain8": "#9edae5"}


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise EdgespecError("plots need matplotlib: pip install 'edgespec[bench]' (or pass --no-plots)") from None
    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt
    return plt


def plot_all(results: dict, out_dir: Path) -> list[Path]:
    plt = pyplot()
    paths = []
    for fn in (plot_speedup, plot_draft_lengths, plot_cost_curve):
        path = fn(plt, results, out_dir)
        if path is not None:
            paths.append(path)
    return paths


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_speedup(plt, results: dict, out_dir: Path) -> Path | None:
    """Bars: each mode's tokens/s over the first available baseline, per prompt set, min-max whiskers."""
    summary = results["summary"]
    sets = [s for s in summary if s != "all"]
    modes = results["modes"]
    base = next((b for b in ("genai-target", "edgespec-target") if b in modes), None)
    if base is None or not sets:
        return None
    shown = [m for m in modes if m != base]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 2 + 1.6 * len(sets)), 4))
    width = 0.8 / len(shown)
    for i, mode in enumerate(shown):
        xs, ys, lo, hi = [], [], [], []
        for j, s in enumerate(sets):
            sp = summary[s].get(mode, {}).get("speedup", {}).get(base)
            if not sp:
                continue
            xs.append(j + (i - (len(shown) - 1) / 2) * width)
            ys.append(sp["median"])
            lo.append(sp["median"] - sp["min"])
            hi.append(sp["max"] - sp["median"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=LABELS[mode], color=COLORS[mode])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(sets)), sets)
    ax.set_ylabel(f"speedup over {LABELS[base]} (tokens/s)")
    ax.set_title(f"{results['pair']['name']}: wall-clock speedup\n(median, min-max over repeats)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(plt, fig, out_dir / "speedup.png")


def plot_draft_lengths(plt, results: dict, out_dir: Path) -> Path | None:
    """Measured tokens/s against draft length for the speculative modes, the prediction, the baselines."""
    sweep = results.get("sweep", {}).get("summary") or {}
    if not sweep:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, rows in sweep.items():
        rows = {int(k): v for k, v in rows.items()}  # keys are str once read back from JSON
        ks = sorted(rows)
        med = [rows[k]["tokens_per_s"]["median"] for k in ks]
        lo = [rows[k]["tokens_per_s"]["median"] - rows[k]["tokens_per_s"]["min"] for k in ks]
        hi = [rows[k]["tokens_per_s"]["max"] - rows[k]["tokens_per_s"]["median"] for k in ks]
        ax.errorbar(ks, med, yerr=[lo, hi], marker="o", capsize=3, label=LABELS[mode], color=COLORS[mode])
    pred = (results.get("cost_curve") or {}).get("prediction")
    if pred:
        by_k = {int(k): v for k, v in pred["by_k"].items()}
        ks = sorted(by_k)
        ax.plot(ks, [by_k[k]["tokens_per_s"] for k in ks], linestyle="--", color=COLORS["edgespec-spec"],
                alpha=0.6, label=f"predicted from cost curve (a={pred['acceptance']:.2f})")
    for mode in ("genai-target", "edgespec-target"):
        row = results["summary"].get("all", {}).get(mode)
        if row and row["tokens_per_s"]:
            ax.axhline(row["tokens_per_s"]["median"], linestyle=":", color=COLORS[mode],
                       label=f"{LABELS[mode]} (main run, all prompts)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("draft length k (fixed)")
    ax.set_ylabel("new tokens/s")
    ax.set_title(f"{results['pair']['name']}: tokens/s by draft length")
    ax.legend(fontsize=7)
    return _save(plt, fig, out_dir / "draft_length.png")


def plot_cost_curve(plt, results: dict, out_dir: Path) -> Path | None:
    """Target time for one call with n new tokens, against n sequential single-token steps."""
    curve = results.get("cost_curve")
    if not curve or not curve.get("target"):
        return None
    call_s = {int(k): v for k, v in curve["target"]["call_s"].items()}
    ns = sorted(call_s)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ns, [call_s[n] * 1000 for n in ns], marker="o", label="target: one call with n new tokens")
    ax.plot(ns, [call_s[ns[0]] * n * 1000 for n in ns], linestyle=":", color="gray",
            label="n single-token target steps")
    if curve.get("draft_token_s"):
        d = curve["draft_token_s"]
        ax.plot(ns, [n * d * 1000 for n in ns], linestyle="--", color="green",
                label="n single-token draft steps")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("new tokens in one call (n)")
    ax.set_ylabel("ms")
    ax.set_title(f"{results['pair']['name']}: verification cost ({curve['target']['past_tokens']}-token past)")
    ax.legend(fontsize=7)
    return _save(plt, fig, out_dir / "cost_curve.png")

