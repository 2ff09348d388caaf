"""Figures of the atlas: UMAP panels and marker dot plots that fit a 1280 px page."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cordatlas import vocabulary
from cordatlas.plotting.base import (
    MAX_WIDTH_IN,
    apply_category_colours,
    cell_type_palette,
    condition_palette,
    message_figure,
    sample_palettes,
    save,
)


def umap_palettes(
    adata: ad.AnnData,
    keys: Sequence[str],
    *,
    contrast: Sequence[str] | None = None,
    condition_key: str = "condition",
    cell_type_key: str = vocabulary.CELL_TYPE,
    donor_key: str = "donor",
    sample_key: str = "sample",
) -> dict[str, dict[str, str]]:
    """The palette of each UMAP panel in `keys` that the vocabulary fixes, keyed by obs column.

    Condition: :func:`~cordatlas.plotting.base.condition_palette`; cell type: the fixed
    cell-type colours; donor and sample: one mapping
    (:func:`~cordatlas.plotting.base.sample_palettes`), so a sample keeps its donor's colour.
    Other panels (clusters) keep scanpy's default colours.
    """
    obs = adata.obs
    palettes: dict[str, dict[str, str]] = {}
    if condition_key in keys and condition_key in obs:
        palettes[condition_key] = condition_palette(obs[condition_key].dropna().unique(), contrast)
    if cell_type_key in keys and cell_type_key in obs:
        palettes[cell_type_key] = cell_type_palette(obs[cell_type_key].dropna().unique())
    if donor_key in keys or sample_key in keys:
        donors, samples = sample_palettes(obs, donor_key=donor_key, sample_key=sample_key)
        for key, palette in ((donor_key, donors), (sample_key, samples)):
            if key in keys and palette:
                palettes[key] = palette
    return palettes


def drawing_order(n_cells: int, *, seed: int = 0) -> np.ndarray:
    """The order UMAP panels draw cells in: a seeded permutation (figures stay reproducible)."""
    return np.random.default_rng(seed).permutation(n_cells)


def plot_umap(
    adata: ad.AnnData,
    *,
    keys: Sequence[str],
    path: str | Path,
    contrast: Sequence[str] | None = None,
) -> None:
    """UMAP coloured by each obs column in `keys`, one panel each, saved to `path`.

    Condition, cell-type, donor and sample panels use the shared palette (:func:`umap_palettes`;
    `contrast` defaults to :data:`~cordatlas.plotting.base.DEFAULT_CONTRAST`): their
    ``uns[f"{key}_colors"]`` are set from it before drawing. Cells are drawn in one seeded
    random order (:func:`drawing_order`), the same in every panel, so no condition, donor or
    sample is painted under another because of its position in the file.
    """
    keys = [k for k in keys if k in adata.obs]
    for key, palette in umap_palettes(adata, keys, contrast=contrast).items():
        apply_category_colours(adata, key, palette)
    order = drawing_order(adata.n_obs)
    # only what the panels need (no expression matrix copied), in the drawing order
    shuffled = ad.AnnData(
        obs=adata.obs.iloc[order], obsm={"X_umap": adata.obsm["X_umap"][order]}, uns=adata.uns
    )
    # two panels per row (each with its legend) fit the 1280 px page; more wrap onto rows
    n_cols = min(2, len(keys))
    n_rows = math.ceil(len(keys) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(MAX_WIDTH_IN, 4.0 * n_rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        sc.pl.umap(
            shuffled,
            color=key,
            ax=ax,
            show=False,
            frameon=False,
            title=key,
            size=8,
            legend_fontsize=7,
        )
    for ax in axes.flat[len(keys) :]:
        ax.set_axis_off()
    fig.tight_layout()
    save(fig, path)


#: Dot-plot geometry (inches): one gene column, one group row, the widest group label and the
#: legend column; the number of gene columns per row follows from them and 1280 px.
_DOT_COLUMN, _DOT_ROW = 0.2, 0.17
_DOT_LABELS, _DOT_LEGEND = 1.6, 1.3
MAX_DOT_COLUMNS = int((MAX_WIDTH_IN - _DOT_LABELS - _DOT_LEGEND) / _DOT_COLUMN)
#: Area (points^2) of a dot for a gene expressed in every cell of the group.
_DOT_AREA = 70.0
_DOT_FONT = 7.0


def dotplot_statistics(
    adata: ad.AnnData, genes: Sequence[str], *, groupby: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Groups x genes: mean expression scaled to [0, 1] per gene, and fraction of cells expressing.

    Means are of ``adata.X`` (log-normalised in the atlas); the scaling per gene (minimum 0,
    maximum 1 across groups, scanpy's ``standard_scale="var"``) lets markers of very different
    levels share one colour bar. A gene that does not vary gets 0.
    """
    unique = list(dict.fromkeys(genes))
    columns = adata.var_names.get_indexer(unique)
    labels = adata.obs[groupby]
    present = set(labels.astype(str))
    groups = (
        [str(c) for c in labels.cat.categories if str(c) in present]
        if isinstance(labels.dtype, pd.CategoricalDtype)
        else sorted(present)
    )
    labels = labels.astype(str).to_numpy()
    means, fractions = [], []
    for group in groups:
        block = adata.X[labels == group][:, columns]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        means.append(block.mean(axis=0) if len(block) else np.zeros(len(unique)))
        fractions.append((block > 0).mean(axis=0) if len(block) else np.zeros(len(unique)))
    mean = pd.DataFrame(means, index=groups, columns=unique)
    low, span = mean.min(), mean.max() - mean.min()
    scaled = (mean - low) / span.where(span > 0, 1.0)
    return scaled.fillna(0.0), pd.DataFrame(fractions, index=groups, columns=unique)


def wrap_blocks(
    blocks: Sequence[tuple[str, Sequence[str]]], max_columns: int = MAX_DOT_COLUMNS
) -> list[list[tuple[str, list[str]]]]:
    """Gene blocks (label, genes) packed into rows of at most `max_columns` genes.

    Rows break between blocks; a block longer than a row is split into pieces (each keeps the
    label), so no row is wider than the page. Among packings with the fewest rows, the
    narrowest is taken, so the rows come out of similar length.
    """
    rows = _pack_rows(blocks, max_columns)
    total = sum(len(genes) for _, genes in blocks)
    for width in range(max(1, math.ceil(total / max(len(rows), 1))), max_columns):
        narrower = _pack_rows(blocks, width)
        if len(narrower) <= len(rows):
            return narrower
    return rows


def _pack_rows(
    blocks: Sequence[tuple[str, Sequence[str]]], max_columns: int
) -> list[list[tuple[str, list[str]]]]:
    """Greedy packing of `blocks` in order into rows of at most `max_columns` genes."""
    rows: list[list[tuple[str, list[str]]]] = [[]]
    used = 0
    for label, genes in blocks:
        genes = list(genes)
        while genes:
            # a block that fits a row is not split; a longer one fills this row first
            if used == max_columns or (used and used + len(genes) > max_columns >= len(genes)):
                rows.append([])
                used = 0
            piece, genes = genes[: max_columns - used], genes[max_columns - used :]
            rows[-1].append((label, piece))
            used += len(piece)
    return [row for row in rows if row]


def _fit_label(label: str, width: float) -> tuple[str, int]:
    """`label` broken at underscores to fit `width` inches at the dot-plot font; else rotated."""
    char = _DOT_FONT * 0.6 / 72  # average glyph width, inches
    fits = max(1, int(width / char))
    lines: list[str] = []
    for word in label.replace("_", "_ ").split(" "):
        if lines and len(lines[-1]) + len(word) <= fits:
            lines[-1] += word
        else:
            lines.append(word)
    if max(len(line) for line in lines) <= fits and len(lines) <= 2:
        return "\n".join(lines), 0
    return label, 90


def _draw_dot_row(
    ax,
    row: list[tuple[str, list[str]]],
    mean: pd.DataFrame,
    fraction: pd.DataFrame,
    colours: dict[str, str] | None,
):
    """One row of gene blocks: dots, gene names below, block brackets and labels above."""
    genes = [g for _, block in row for g in block]
    groups = list(mean.index)
    gx, gy = np.meshgrid(np.arange(len(genes)), np.arange(len(groups)))
    dots = ax.scatter(
        gx.ravel(),
        gy.ravel(),
        s=_DOT_AREA * fraction[genes].to_numpy().ravel(),
        c=mean[genes].to_numpy().ravel(),
        cmap="Reds",
        vmin=0,
        vmax=1,
        edgecolor="0.5",
        linewidth=0.3,
    )
    ax.set_xticks(range(len(genes)), genes, rotation=90, fontsize=_DOT_FONT)
    ax.set_yticks(range(len(groups)), groups, fontsize=_DOT_FONT)
    ax.set_xlim(-0.6, MAX_DOT_COLUMNS - 0.4)
    ax.set_ylim(len(groups) - 0.5, -0.5)
    ax.spines[["top", "right"]].set_visible(False)
    start = 0
    transform = ax.get_xaxis_transform()
    for label, block in row:
        end = start + len(block) - 1
        colour = (colours or {}).get(label, "black")
        ax.plot(
            [start - 0.3, end + 0.3],
            [1.02, 1.02],
            color=colour,
            linewidth=2.0,
            transform=transform,
            clip_on=False,
            solid_capstyle="butt",
        )
        text, rotation = _fit_label(label, (end - start + 1) * _DOT_COLUMN)
        ax.text(
            (start + end) / 2,
            1.04,
            text,
            rotation=rotation,
            ha="center",
            va="bottom",
            fontsize=_DOT_FONT,
            transform=transform,
        )
        start = end + 1
    return dots


def plot_dot_grid(
    adata: ad.AnnData,
    blocks: Sequence[tuple[str, Sequence[str]]],
    *,
    groupby: str,
    path: str | Path,
    title: str,
    block_colours: dict[str, str] | None = None,
) -> None:
    """Dot plot of gene `blocks` across the groups of `groupby`, wrapped to fit 1280 px.

    Colour: mean expression scaled per gene (:func:`dotplot_statistics`); size: fraction of
    the group's cells expressing the gene. Blocks are packed into rows of at most
    :data:`MAX_DOT_COLUMNS` genes (:func:`wrap_blocks`); each row repeats the group labels.
    `block_colours` colours a block's bracket (the cell-type palette for cell-type blocks).
    """
    blocks = [(str(label), [g for g in genes if g in adata.var_names]) for label, genes in blocks]
    blocks = [(label, genes) for label, genes in blocks if genes]
    if not blocks:
        message_figure(path, "No marker genes of the groups are in the data.", title=title)
        return
    mean, fraction = dotplot_statistics(
        adata, [g for _, genes in blocks for g in genes], groupby=groupby
    )
    rows = wrap_blocks(blocks)
    header = 0.3 + max(_header_height(row) for row in rows)
    panel = _DOT_ROW * len(mean) + header + 0.6  # + the gene names below
    fig = plt.figure(figsize=(MAX_WIDTH_IN, panel * len(rows) + 0.5))
    grid = fig.add_gridspec(len(rows), 2, width_ratios=[MAX_WIDTH_IN - _DOT_LEGEND, _DOT_LEGEND])
    dots = None
    for k, row in enumerate(rows):
        dots = _draw_dot_row(fig.add_subplot(grid[k, 0]), row, mean, fraction, block_colours)
    _dot_legends(fig, grid[0, 1], dots)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)


def _header_height(row: list[tuple[str, list[str]]]) -> float:
    """Height (inches) the block labels of a row need above its dots."""
    char = _DOT_FONT / 72
    heights = []
    for label, block in row:
        text, rotation = _fit_label(label, len(block) * _DOT_COLUMN)
        heights.append(len(label) * char * 0.6 if rotation else (text.count("\n") + 1) * char * 1.3)
    return max(heights)


def _dot_legends(fig, cell, dots) -> None:
    """Colour bar (scaled mean) and dot sizes (% of cells expressing) beside the first row."""
    inner = cell.subgridspec(4, 1, height_ratios=[0.6, 0.6, 0.25, 1.2], hspace=0.2)
    sizes = fig.add_subplot(inner[1])
    shares = [0.2, 0.4, 0.6, 0.8, 1.0]
    sizes.scatter(
        range(len(shares)),
        [0] * len(shares),
        s=[_DOT_AREA * f for f in shares],
        color="0.5",
        edgecolor="0.3",
        linewidth=0.3,
    )
    sizes.set_xticks(range(len(shares)), [f"{int(100 * f)}" for f in shares], fontsize=6)
    sizes.set_yticks([])
    sizes.set_xlim(-0.7, len(shares) - 0.3)
    sizes.spines[["top", "right", "left"]].set_visible(False)
    sizes.set_title("% of cells\nexpressing", fontsize=_DOT_FONT)
    bar_ax = fig.add_subplot(inner[3])
    bar_ax.set_box_aspect(0.15)
    bar = fig.colorbar(dots, cax=bar_ax, orientation="horizontal")
    bar.ax.tick_params(labelsize=6)
    bar_ax.set_title("mean expression\n(scaled per gene)", fontsize=_DOT_FONT)


def plot_marker_dotplot(
    adata: ad.AnnData, markers: pd.DataFrame, *, groupby: str, n_per_cluster: int, path: str | Path
) -> None:
    """Dot plot of each cluster's top `n_per_cluster` markers, wrapped to fit 1280 px."""
    top = markers[markers["rank"] <= n_per_cluster]
    blocks = [(str(c), list(g["gene"])) for c, g in top.groupby("cluster", sort=False)]
    plot_dot_grid(
        adata,
        blocks,
        groupby=groupby,
        path=path,
        title=(
            f"Top {n_per_cluster} Wilcoxon markers of each {groupby} cluster (cells as units); "
            "colour: mean expression scaled per gene, size: % of cells expressing"
        ),
    )


def plot_panel_dotplot(
    adata: ad.AnnData,
    markers: dict[str, list[str]],
    *,
    groupby: str = "cell_type",
    path: str | Path,
) -> None:
    """Dot plot of each labelled cell type's panel markers across the labels (present genes only).

    Blocks follow the panel's order; each block's bracket has its cell type's fixed colour.
    """
    labels = set(adata.obs[groupby].astype(str))
    blocks = [(name, genes) for name, genes in markers.items() if name in labels]
    plot_dot_grid(
        adata,
        blocks,
        groupby=groupby,
        path=path,
        title=(
            "Marker-panel genes of each assigned cell type; colour: mean expression scaled per "
            "gene, size: % of cells expressing"
        ),
        block_colours=cell_type_palette(name for name, _ in blocks),
    )
