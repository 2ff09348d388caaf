"""Figure of the gene-set enrichment: gene sets x cell types dot plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cordatlas.plotting.base import message_figure, save


def plot_enrichment(
    results: pd.DataFrame,
    *,
    path: str | Path,
    alpha: float = 0.05,
    max_sets: int = 40,
) -> None:
    """Dot plot of gene sets x cell types: colour = auc - 0.5 (signed), size = -log10 padj.

    Red: the set's genes rank higher in the condition, blue: lower; a black ring marks
    padj < `alpha`; cells left blank were not tested (size limits, cell type without a
    ranking). When more than `max_sets` sets were tested, the `max_sets` with the smallest padj
    in any cell type are shown (the title says so).

    Parameters
    ----------
    results
        Concatenated :func:`cordatlas.compare.enrichment.rank_enrichment` tables (any cell types).
    path
        Output file (PNG or SVG by suffix).
    alpha
        Significance level for the ring.
    max_sets
        Most sets shown.
    """
    tested = results
    if not results.empty:
        tested = results[pd.to_numeric(results["pvalue"], errors="coerce").notna()]
    if tested.empty:
        message_figure(path, "No gene sets tested\n(no ranking, or no set within the size limits).")
        return
    tested = tested.assign(
        cell_type=tested["cell_type"].astype(str),
        gene_set=tested["gene_set"].astype(str),
        padj=pd.to_numeric(tested["padj"], errors="coerce"),
        auc=pd.to_numeric(tested["auc"], errors="coerce"),
    )
    best = tested.groupby("gene_set")["padj"].min().sort_values(kind="stable")
    n_sets = len(best)
    shown = best.index[:max_sets].tolist()
    tested = tested[tested["gene_set"].isin(shown)]
    sets = shown[::-1]  # smallest padj at the top
    types = sorted(tested["cell_type"].unique())
    x = tested["cell_type"].map({t: i for i, t in enumerate(types)}).to_numpy()
    y = tested["gene_set"].map({s: i for i, s in enumerate(sets)}).to_numpy()
    effect = (tested["auc"] - 0.5).to_numpy(dtype=float)
    padj = tested["padj"].to_numpy(dtype=float)
    size = 12 + 40 * np.clip(-np.log10(np.clip(padj, 1e-10, 1)), 0, 10) / 2
    limit = max(0.05, float(np.nanmax(np.abs(effect))))
    fig, ax = plt.subplots(
        figsize=(max(4.5, 0.6 * len(types) + 4), max(3.0, 0.28 * len(sets) + 1.8))
    )
    dots = ax.scatter(
        x, y, s=size, c=effect, cmap="RdBu_r", vmin=-limit, vmax=limit, edgecolor="none"
    )
    significant = padj < alpha
    ax.scatter(
        x[significant],
        y[significant],
        s=size[significant] + 25,
        facecolor="none",
        edgecolor="black",
        linewidth=1.0,
    )
    exploratory = set()
    if "evidence" in tested.columns:
        exploratory = set(
            tested.loc[tested["evidence"].astype(str) != "donor_level", "cell_type"].astype(str)
        )
    labels = [f"{t} (EXPLORATORY)" if t in exploratory else t for t in types]
    ax.set_xticks(range(len(types)), labels, rotation=60, ha="right", fontsize=8)
    for tick, cell_type in zip(ax.get_xticklabels(), types, strict=True):
        if cell_type in exploratory:
            tick.set_color("darkred")
    ax.set_yticks(range(len(sets)), sets, fontsize=8)
    ax.set_xlim(-0.7, len(types) - 0.3)
    ax.set_ylim(-0.7, len(sets) - 0.3)
    bar = fig.colorbar(dots, ax=ax, shrink=0.8)
    bar.set_label("AUC - 0.5 (red: higher in condition)", fontsize=8)
    title = f"Gene-set enrichment (ring: padj < {alpha}; size: -log10 padj)"
    if exploratory:
        title += "\nEXPLORATORY (red labels): cell-level DE, no biological replication"
    if n_sets > len(shown):
        title += f"\n{len(shown)} of {n_sets} tested sets shown (smallest padj)"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)
