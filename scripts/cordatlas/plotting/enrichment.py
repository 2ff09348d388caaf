"""Figure of the gene-set enrichment: gene sets x cell types dot plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from cordatlas.plotting.base import MAX_WIDTH_IN, message_figure, save
from cordatlas.vocabulary import EVIDENCE, confounded_title


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
        # ranking-only rows (cell-level DE) have an AUC but no p-value: drawn, never ringed
        tested = results[pd.to_numeric(results["auc"], errors="coerce").notna()]
    if tested.empty:
        message_figure(path, "No gene sets tested\n(no ranking, or no set within the size limits).")
        return
    tested = tested.assign(
        cell_type=tested["cell_type"].astype(str),
        gene_set=tested["gene_set"].astype(str),
        padj=pd.to_numeric(tested["padj"], errors="coerce"),
        auc=pd.to_numeric(tested["auc"], errors="coerce"),
    )
    best = tested.groupby("gene_set")["padj"].min().sort_values(kind="stable", na_position="last")
    n_sets = len(best)
    shown = best.index[:max_sets].tolist()
    tested = tested[tested["gene_set"].isin(shown)]
    sets = shown[::-1]  # smallest padj at the top
    types = list(dict.fromkeys(tested["cell_type"]))  # the DE table's order (the panel's)
    exploratory = _exploratory_types(tested)
    column = min(0.55, (MAX_WIDTH_IN - _LABELS - _LEGEND) / max(len(types), 1))
    fig, ax = plt.subplots(
        figsize=(column * len(types) + _LABELS + _LEGEND, max(3.2, 0.28 * len(sets) + 2.4))
    )
    dots = _draw_dots(ax, tested, types, sets, alpha=alpha)
    labels = [f"{t} *" if t in exploratory else t for t in types]
    ax.set_xticks(range(len(types)), labels, rotation=60, ha="right", fontsize=8)
    for tick, cell_type in zip(ax.get_xticklabels(), types, strict=True):
        if cell_type in exploratory:
            tick.set_color("darkred")
    ax.set_yticks(range(len(sets)), sets, fontsize=8)
    ax.set_xlim(-0.7, len(types) - 0.3)
    ax.set_ylim(-0.7, len(sets) - 0.3)
    bar = fig.colorbar(dots, ax=ax, shrink=0.9, pad=0.02, fraction=0.04)
    bar.set_label("AUC - 0.5\n(red: higher in condition)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    _size_legend(ax, alpha)
    lines = [f"Gene-set enrichment per cell type (rank AUC; ring: padj < {alpha:g})"]
    if exploratory:
        lines.append("red labels, *: EXPLORATORY (cell-level DE, no biological replication)")
    if n_sets > len(shown):
        lines.append(f"{len(shown)} of {n_sets} tested sets shown (smallest padj)")
    labels = results[EVIDENCE] if EVIDENCE in results.columns else []
    ax.set_title(confounded_title("\n".join(lines), labels), fontsize=9)
    fig.tight_layout()
    save(fig, path)


#: Width (inches) kept for the gene-set names and for the colour bar and size legend.
_LABELS, _LEGEND = 2.2, 2.0
#: padj shown in the size legend.
_LEGEND_PADJ = (0.05, 1e-3, 1e-6, 1e-10)


def _dot_size(padj: np.ndarray) -> np.ndarray:
    """Dot area (points^2) from padj: grows with -log10 padj up to 1e-10; NaN padj smallest."""
    size = 12 + 20 * np.clip(-np.log10(np.clip(padj, 1e-10, 1)), 0, 10)
    return np.where(np.isfinite(size), size, 12.0)  # no p-value (a ranking): the smallest dot


def _exploratory_types(tested: pd.DataFrame) -> set[str]:
    if "evidence" not in tested.columns:
        return set()
    chosen = tested["evidence"].astype(str) != "donor_level"
    return set(tested.loc[chosen, "cell_type"].astype(str))


def _draw_dots(ax, tested: pd.DataFrame, types: list[str], sets: list[str], *, alpha: float):
    """One dot per tested (cell type, set): colour AUC - 0.5, size -log10 padj, ring if < alpha."""
    x = tested["cell_type"].map({t: i for i, t in enumerate(types)}).to_numpy()
    y = tested["gene_set"].map({s: i for i, s in enumerate(sets)}).to_numpy()
    effect = (tested["auc"] - 0.5).to_numpy(dtype=float)
    padj = tested["padj"].to_numpy(dtype=float)
    size = _dot_size(padj)
    limit = max(0.05, float(np.nanmax(np.abs(effect))))
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
    return dots


def _size_legend(ax, alpha: float) -> None:
    """Legend of dot sizes (padj) and the significance ring, right of the colour bar."""
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="0.5",
            markeredgecolor="none",
            markersize=float(np.sqrt(_dot_size(np.array([p]))[0])),
            label=f"{p:g}",
        )
        for p in _LEGEND_PADJ
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="none",
            markeredgecolor="black",
            markersize=8,
            label=f"padj < {alpha:g}",
        )
    )
    ax.legend(
        handles=handles,
        title="padj",
        title_fontsize=8,
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.16, 1.0),
        frameon=False,
        labelspacing=1.0,
    )
