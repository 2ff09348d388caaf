"""Figures of the atlas: UMAP panels and marker dot plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc

from cordatlas import vocabulary
from cordatlas.plotting.base import (
    apply_category_colours,
    cell_type_palette,
    condition_palette,
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
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        sc.pl.umap(shuffled, color=key, ax=ax, show=False, frameon=False, title=key, size=8)
    fig.tight_layout()
    save(fig, path)


def _save_dotplot(dotplot, path: str | Path) -> None:
    """Draw a scanpy dot plot object and write it with the one save helper."""
    dotplot.make_figure()
    save(dotplot.fig, path)


def plot_marker_dotplot(
    adata: ad.AnnData, markers: pd.DataFrame, *, groupby: str, n_per_cluster: int, path: str | Path
) -> None:
    """Dot plot of each cluster's top markers (colour: mean log expression; size: % cells expressing)."""
    top = markers[markers["rank"] <= n_per_cluster]
    genes = {str(c): list(g["gene"]) for c, g in top.groupby("cluster", sort=False)}
    dotplot = sc.pl.dotplot(
        adata, var_names=genes, groupby=groupby, show=False, return_fig=True, standard_scale="var"
    )
    _save_dotplot(dotplot, path)


def plot_panel_dotplot(
    adata: ad.AnnData,
    markers: dict[str, list[str]],
    *,
    groupby: str = "cell_type",
    path: str | Path,
) -> None:
    """Dot plot of each labelled cell type's panel markers across the labels (present genes only)."""
    labels = set(adata.obs[groupby].astype(str))
    genes = {
        name: [g for g in genes if g in adata.var_names]
        for name, genes in markers.items()
        if name in labels
    }
    genes = {name: g for name, g in genes.items() if g}
    dotplot = sc.pl.dotplot(
        adata, var_names=genes, groupby=groupby, show=False, return_fig=True, standard_scale="var"
    )
    _save_dotplot(dotplot, path)
