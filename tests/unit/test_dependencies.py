"""The pinned stack computes correctly where known version traps lie (see pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import version

import anndata as ad
import numpy as np
import scanpy as sc


def test_neighbors_above_4096_cells_uses_pynndescent_and_works():
    """scanpy 1.11.5 + pynndescent 0.7.0 crashes here ('csr_array' has no 'getnnz'); 0.6.0 works.

    Above 4,096 cells scanpy switches from exact search to pynndescent, so 5,200 cells exercise it.
    """
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, size=(4, 20))
    labels = rng.integers(0, 4, size=5200)
    adata = ad.AnnData(np.zeros((5200, 1), dtype=np.float32))
    adata.obsm["X_pca"] = (centres[labels] + rng.normal(0, 1, size=(5200, 20))).astype(np.float32)
    sc.pp.neighbors(adata, n_neighbors=15, use_rep="X_pca", random_state=0)
    connectivities = adata.obsp["connectivities"]
    assert connectivities.shape == (5200, 5200)
    # neighbours are found within the planted groups
    rows, cols = connectivities.nonzero()
    assert (labels[rows] == labels[cols]).mean() > 0.99
    assert version("pynndescent") == "0.6.0"
    assert version("scanpy").startswith("1.11.")
