"""Figures of differential expression (volcano, top-gene heatmap)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from adjustText import adjust_text
from matplotlib.colors import ListedColormap

from cordatlas.compare.plan import pseudobulk_mask
from cordatlas.plotting.base import condition_handles, condition_palette, message_figure, save
from cordatlas.vocabulary import CONDITION_COLOUR, REFERENCE_COLOUR

#: Title banner of results without biological replication (cordatlas.compare.pseudobulk fallback).
EXPLORATORY_BANNER = "EXPLORATORY: cell-level, no biological replication"

#: Volcano points that are not significant.
_NULL = "0.7"


def _is_exploratory(results: pd.DataFrame) -> bool:
    return (
        "evidence" in results
        and (results["evidence"].astype(str) == "exploratory_no_replication").any()
    )


def _title(title: str, results: pd.DataFrame) -> str:
    return f"{EXPLORATORY_BANNER}\n{title}" if _is_exploratory(results) else title


def _colour(exploratory: bool) -> str:
    """Title colour: dark red flags results without biological replication."""
    return "darkred" if exploratory else "black"


def plot_volcano(
    results: pd.DataFrame,
    *,
    path: str | Path,
    title: str,
    alpha: float = 0.05,
    lfc_threshold: float = 1.0,
    n_labels: int = 12,
) -> None:
    """Volcano plot: log2 fold change against -log10 p-value, one point per tested gene.

    Genes with ``padj < alpha`` and ``|log2FC| >= lfc_threshold`` are coloured with the
    vocabulary's condition colour when higher in the condition and its reference colour when
    higher in the reference; the `n_labels` most significant of them are named. Results
    from the exploratory cell-level test get :data:`EXPLORATORY_BANNER` above the title.
    Empty results give a figure that says no genes were tested.

    Parameters
    ----------
    results
        A DE table (cordatlas.compare.pseudobulk.DE_COLUMNS).
    path
        Output image (PNG or SVG by suffix).
    title
        Figure title, e.g. ``"CD14_monocyte: cord_blood vs adult"``.
    alpha, lfc_threshold
        Significance level on ``padj`` and the fold-change line drawn at +-`lfc_threshold`.
    n_labels
        Most significant coloured genes to name.
    """
    exploratory = _is_exploratory(results)
    full_title = _title(title, results)
    p = pd.to_numeric(results.get("pvalue", pd.Series(dtype=float)), errors="coerce")
    usable = results.loc[p.notna().to_numpy()] if len(results) else results
    if usable.empty:
        message_figure(path, "no genes tested", title=full_title, title_colour=_colour(exploratory))
        return
    lfc = pd.to_numeric(usable["log2FC"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    pvalue = pd.to_numeric(usable["pvalue"], errors="coerce").to_numpy(dtype=float)
    padj = pd.to_numeric(usable["padj"], errors="coerce").fillna(1.0).to_numpy(dtype=float)
    smallest = pvalue[pvalue > 0].min() if (pvalue > 0).any() else 1e-300
    y = -np.log10(np.maximum(pvalue, smallest))
    hit = (padj < alpha) & (np.abs(lfc) >= lfc_threshold)
    colour = np.where(
        hit & (lfc > 0), CONDITION_COLOUR, np.where(hit & (lfc < 0), REFERENCE_COLOUR, _NULL)
    )

    # cell-level log2FC reaches about +-30 for genes undetected in one group: draw those beyond
    # +-10 at the edge (triangles) so they do not squash everything else
    typical = np.abs(lfc)[np.abs(lfc) <= 10.0]
    limit = max(2.0 * lfc_threshold, float(typical.max()) if typical.size else 0.0) * 1.05
    clipped = np.abs(lfc) > limit
    x = np.clip(lfc, -limit, limit)

    fig, ax = plt.subplots(figsize=(6.5, 5.2))
    for marker, subset in (("o", ~clipped), ("^", clipped)):
        order = np.flatnonzero(subset)[np.argsort(hit[subset], kind="stable")]  # hits on top
        ax.scatter(
            x[order], y[order], c=colour[order], s=9, marker=marker, linewidths=0, rasterized=True
        )
    for threshold in (-lfc_threshold, lfc_threshold):
        ax.axvline(threshold, color="0.4", linestyle="--", linewidth=0.8)
    ax.set_ylim(0, max(float(y.max()), 1.0) * 1.12)
    ax.set_xlabel("log2 fold change (condition vs reference)")
    ax.set_ylabel("-log10 p-value")
    n_up, n_down = int((hit & (lfc > 0)).sum()), int((hit & (lfc < 0)).sum())
    caption = (
        f"{len(usable)} genes tested; padj < {alpha:g} and |log2FC| >= {lfc_threshold:g}: "
        f"{n_up} up, {n_down} down"
    )
    if clipped.any():
        caption += (
            f"\n{int(clipped.sum())} genes beyond +-{limit:.1f} drawn at the edge (triangles)"
        )
    if not hit.any():
        ax.text(0.5, 0.5, "nothing significant", transform=ax.transAxes, ha="center",
                va="center", fontsize=14, color="0.3")  # fmt: skip
    genes = usable["gene"].astype(str).to_numpy()
    labelled = np.flatnonzero(hit)
    labelled = labelled[np.lexsort((genes[labelled], padj[labelled]))][:n_labels]
    ax.set_title(f"{full_title}\n{caption}", color=_colour(exploratory), fontsize=9)
    fig.tight_layout()
    dropped = label_points(ax, x, y, labelled, genes)
    if dropped:
        ax.set_title(
            f"{full_title}\n{caption}; {dropped} label(s) left out (no room)",
            color=_colour(exploratory),
            fontsize=9,
        )
    save(fig, path)


#: Points adjustText keeps labels off, besides the labelled ones: the highest on the plot.
AVOID_POINTS = 1000


def label_points(ax, x: np.ndarray, y: np.ndarray, chosen: np.ndarray, names: np.ndarray) -> int:
    """Name the points `chosen` (most important first) without two labels overlapping.

    adjustText (Flyamer et al., github.com/Phlya/adjustText) moves the labels apart and away
    from the points, with a leader line to each; it is deterministic (its only random step is
    seeded). Any label still overlapping one placed before it is removed, so the figure
    never shows two names on top of each other. Returns how many were removed.
    """
    if len(chosen) == 0:
        return 0
    texts = [ax.text(x[i], y[i], names[i], fontsize=7, zorder=5) for i in chosen]
    # the points labels are kept off: the chosen ones and the AVOID_POINTS highest (where the
    # labels sit); every point of a 13,000-gene volcano made adjustText's job 1 GB larger
    near = np.union1d(np.argsort(-y, kind="stable")[:AVOID_POINTS], chosen)
    _, leaders = adjust_text(
        texts,
        x=x[near],
        y=y[near],
        ax=ax,
        expand=(1.15, 1.4),
        arrowprops={"arrowstyle": "-", "color": "0.35", "linewidth": 0.5},
    )
    renderer = ax.figure.canvas.get_renderer()
    kept: list = []
    dropped = 0
    for text in texts:
        box = text.get_window_extent(renderer)
        if any(box.overlaps(other) for other in kept):
            for leader in leaders:
                if getattr(leader, "patchA", None) is text:
                    leader.remove()
            text.remove()
            dropped += 1
        else:
            kept.append(box)
    return dropped


def plot_de_heatmap(
    pseudobulk: ad.AnnData,
    results: pd.DataFrame,
    *,
    cell_type: str,
    path: str | Path,
    n_top: int = 30,
    alpha: float = 0.05,
    contrast: Sequence[str] | None = None,
    cell_type_key: str = "cell_type",
    replicate_key: str = "donor",
    condition_key: str = "condition",
    min_cells: int = 0,
) -> None:
    """Heatmap of the top genes by ``padj``: z-scored log2 CPM across the cell type's pseudobulks.

    Columns are that cell type's pseudobulks (with at least `min_cells` cells), grouped by
    condition (`contrast` order, else sorted) with a bar in the vocabulary's condition colours
    (:func:`~cordatlas.plotting.base.condition_palette`), labelled by replicate. Each gene's
    log2(CPM + 1) is z-scored across the columns, so the figure shows whether the difference is
    carried by every donor or by one. Empty results or no pseudobulk give a figure that says so.

    Parameters
    ----------
    pseudobulk
        Result of cordatlas.compare.pseudobulk.aggregate_pseudobulk (all cell types).
    results
        The cell type's DE table.
    cell_type
        Cell type whose pseudobulks are shown.
    path
        Output image.
    n_top
        Genes shown (smallest ``padj``, then p-value).
    alpha
        Significance level quoted in the title.
    contrast
        (condition, reference): column order and the conditions shown (default: all, sorted).
    min_cells
        Pseudobulks with fewer cells are left out (use the value the test used).
    """
    exploratory = _is_exploratory(results)
    title = _title(f"{cell_type}: top genes, z-scored log2 CPM per donor pseudobulk", results)
    tested = results
    if len(results):
        tested = results.loc[pd.to_numeric(results["pvalue"], errors="coerce").notna()]
    if tested.empty:
        message_figure(path, "no genes tested", title=title, title_colour=_colour(exploratory))
        return
    obs = pseudobulk.obs
    of_type = (obs[cell_type_key].astype(str) == cell_type).to_numpy()
    conditions = (
        [str(c) for c in contrast]
        if contrast is not None
        else sorted(set(obs[condition_key].astype(str)[of_type]))
    )
    keep = pseudobulk_mask(
        obs,
        cell_type=cell_type,
        conditions=conditions,
        cell_type_key=cell_type_key,
        condition_key=condition_key,
        min_cells=min_cells,
    )
    if not keep.any():
        message_figure(
            path,
            f"no pseudobulk of {cell_type} to show",
            title=title,
            title_colour=_colour(exploratory),
        )
        return
    rows = _ordered_rows(obs, keep, conditions, replicate_key, condition_key)
    ranked = _ranked_genes(tested)
    genes = [g for g in ranked["gene"].astype(str) if g in pseudobulk.var_names][:n_top]
    z = _zscored_log_cpm(pseudobulk, rows, genes)
    n_significant = int((ranked["_padj"] < alpha).sum())
    note = (
        f"{n_significant} genes with padj < {alpha:g}; showing top {len(genes)} by padj"
        if n_significant
        else f"nothing significant at padj < {alpha:g}; showing top {len(genes)} by p-value"
    )
    palette = condition_palette(conditions, contrast)
    fig, (bar, ax) = _heatmap_axes(n_genes=len(genes), n_columns=len(rows))
    sub_obs = obs.iloc[rows]
    _condition_bar(bar, sub_obs[condition_key].astype(str).to_numpy(), palette)
    bar.set_title(f"{title}\n{note}", color=_colour(exploratory), fontsize=9)
    _draw_zscores(fig, ax, z, genes, sub_obs, replicate_key)
    fig.tight_layout()
    save(fig, path)


def _ordered_rows(
    obs: pd.DataFrame,
    keep: np.ndarray,
    conditions: Sequence[str],
    replicate_key: str,
    condition_key: str,
) -> np.ndarray:
    """Positions of the kept pseudobulks, grouped by condition (`conditions` order), then replicate."""
    rows = np.flatnonzero(keep)
    rank = {c: i for i, c in enumerate(conditions)}
    sub_obs = obs.iloc[rows]
    sort_key = np.lexsort(
        (
            sub_obs[replicate_key].astype(str).to_numpy(),
            sub_obs[condition_key].astype(str).map(rank).to_numpy(),
        )
    )
    return rows[sort_key]


def _ranked_genes(tested: pd.DataFrame) -> pd.DataFrame:
    """Tested genes by padj (missing counts as 1), then p-value, then name."""
    return tested.assign(
        _padj=pd.to_numeric(tested["padj"], errors="coerce").fillna(1.0),
        _p=pd.to_numeric(tested["pvalue"], errors="coerce"),
    ).sort_values(["_padj", "_p", "gene"], kind="mergesort")


def _zscored_log_cpm(pseudobulk: ad.AnnData, rows: np.ndarray, genes: list[str]) -> np.ndarray:
    """Genes x pseudobulks: log2(CPM + 1) z-scored per gene (0 where a gene does not vary)."""
    counts = pseudobulk.X[rows]
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    counts = counts.astype(float)
    library = counts.sum(axis=1, keepdims=True)
    cpm = counts / np.where(library > 0, library, 1.0) * 1e6
    columns = pseudobulk.var_names.get_indexer(genes)
    values = np.log2(cpm[:, columns] + 1.0).T
    sd = values.std(axis=1, keepdims=True)
    centred = values - values.mean(axis=1, keepdims=True)
    return np.where(sd > 0, centred / np.where(sd > 0, sd, 1), 0)


def _heatmap_axes(*, n_genes: int, n_columns: int):
    """A figure with a thin condition bar above the heatmap, sized to the genes and columns."""
    height = max(3.5, 0.22 * n_genes + 2.2)
    width = max(5.0, 0.45 * n_columns + 3.0)
    return plt.subplots(
        2,
        1,
        figsize=(width, height),
        gridspec_kw={"height_ratios": [0.4, max(n_genes, 1)]},
        sharex=True,
    )


def _condition_bar(bar, conditions: np.ndarray, palette: dict[str, str]) -> None:
    """One cell per pseudobulk in its condition's colour, with a legend of the conditions."""
    levels = list(palette)
    codes = np.array([[levels.index(c) for c in conditions]])
    bar.imshow(
        codes,
        aspect="auto",
        cmap=ListedColormap([palette[c] for c in levels]),
        vmin=-0.5,
        vmax=len(levels) - 0.5,
        interpolation="nearest",
    )
    bar.set_yticks([])
    bar.legend(
        handles=condition_handles(palette),
        bbox_to_anchor=(1.01, 1.0),
        loc="upper left",
        fontsize=8,
    )


def _draw_zscores(fig, ax, z: np.ndarray, genes: list[str], sub_obs, replicate_key: str) -> None:
    """The z-score heatmap, genes as rows, pseudobulks labelled ``replicate (cells)``."""
    image = ax.imshow(z, aspect="auto", cmap="RdBu_r", vmin=-2.5, vmax=2.5, interpolation="nearest")
    ax.set_yticks(range(len(genes)), genes, fontsize=7)
    labels = [
        f"{r} ({n})"
        for r, n in zip(
            sub_obs[replicate_key].astype(str), sub_obs["n_cells"].astype(int), strict=True
        )
    ]
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel(f"{replicate_key} (cells)")
    fig.colorbar(image, ax=ax, label="z-score of log2(CPM + 1)", shrink=0.6)
