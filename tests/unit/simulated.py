"""Helpers shared by unit tests that run the package on the project's simulator."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from cordatlas.atlas.build import normalise


def healthy_cells(adata: ad.AnnData) -> ad.AnnData:
    """A simulated study's healthy singlets: unique names, log-normalised X, counts in layers."""
    cells = adata[adata.obs["artefact"] == "none"].copy()
    cells.obs_names = (
        cells.obs["sample"].astype(str) + ":" + cells.obs["barcode"].astype(str)
    ).to_numpy()
    cells.X = sp.csr_matrix(cells.X, dtype=np.float32)
    normalise(cells)
    return cells
