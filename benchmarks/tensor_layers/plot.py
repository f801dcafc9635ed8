"""The accuracy-vs-parameters figure (docs/img/tensor_tradeoff.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(summaries: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(summaries), figsize=(6.5 * len(summaries), 8.5), squeeze=False)
    colors = {"cp": "tab:blue", "tucker": "tab:orange", "tt": "tab:green"}
    panels = (
        (0, "params", {"tensorized": "s", "tensorized-prefix": "x"}, "parameters (whole network)"),
        (1, "head_params", {"trl": "o", "tcl+trl": "D"}, "parameters (classifier head)"),
    )
    for col, (dataset, rows) in enumerate(summaries.items()):
        dense = next(r for r in rows if r["method"] == "dense")
        for row_idx, key, styles, xlabel in panels:
            ax = axes[row_idx][col]
            for ref in rows:
                if ref["method"] in ("dense", "dense_ft"):
                    ax.errorbar(
                        [ref[key]],
                        [100 * ref["acc"]],
                        yerr=[100 * ref["acc_std"]],
                        marker="*",
                        ms=12,
                        color="black" if ref["method"] == "dense" else "gray",
                        ls="none",
                        label=f"{ref['method']} ({ref[key]:,})",
                    )
            # the claims' anchors: the whole network vs the dense CNN fine-tuned as long, the heads vs the dense CNN
            band = next((r for r in rows if r["method"] == "dense_ft"), dense) if row_idx == 0 else dense
            ax.axhspan(
                100 * band["acc"] - (1.0 if row_idx == 0 else 0.5),
                100 * band["acc"],
                color="gray",
                alpha=0.15,
                label="iso-accuracy band",
            )
            for method, marker in styles.items():
                for fact, color in colors.items():
                    pts = sorted(
                        (r[key], 100 * r["acc"], 100 * r["acc_std"])
                        for r in rows
                        if r["method"] == method and r["factorization"] == fact
                    )
                    if pts:
                        xs, ys, es = zip(*pts)
                        broken = "prefix" in method
                        ax.errorbar(
                            xs,
                            ys,
                            yerr=es,
                            marker=marker,
                            color=color,
                            capsize=2,
                            lw=1,
                            alpha=0.35 if broken else 1.0,
                            ls=":" if broken else "-",
                            label=f"{method} {fact}" + (" (old Tucker-linear ranks, fixed since)" if broken else ""),
                        )
            ax.set_xscale("log")
            ax.set_ylim(max(0, 100 * dense["acc"] - 25), 100 * max(r["acc"] for r in rows) + 3)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"test accuracy (%), mean +- std, {dense['seeds']} seed(s)")
            ax.set_title(f"{dataset}: " + ("tensorize() + fine-tune" if row_idx == 0 else "tensor heads"))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
