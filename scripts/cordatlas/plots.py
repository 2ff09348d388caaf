"""Figures for the report: matplotlib only, written to files, never shown."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import scanpy as sc  # noqa: E402


def plot_umap(adata: ad.AnnData, *, keys: Sequence[str], path: str | Path) -> None:
    """UMAP coloured by each obs column in `keys`, one panel each, saved to `path`."""
    keys = [k for k in keys if k in adata.obs]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        sc.pl.umap(adata, color=key, ax=ax, show=False, frameon=False, title=key, size=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
