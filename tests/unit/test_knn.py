"""The exact kNN transformer gives scikit-learn's brute-force graph."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsTransformer

from cordatlas.atlas.knn import ExactKNN


def _clustered(n: int, dims: int, seed: int) -> np.ndarray:
    """Points in a few tight groups, as an embedding of cell types is (many close neighbours)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(6, dims))
    return (centres[rng.integers(6, size=n)] + rng.normal(size=(n, dims))).astype(np.float32)


def test_graph_equals_scikit_learn_brute_force():
    points = _clustered(3000, 20, seed=1)
    expected = KNeighborsTransformer(n_neighbors=12, algorithm="brute").fit_transform(points)
    got = ExactKNN(n_neighbors=12, n_jobs=2).fit_transform(points)
    assert got.shape == expected.shape == (3000, 3000)
    assert np.all(np.diff(got.indptr) == 13)  # the cell itself and 12 others
    for row in range(3000):
        found, truth = got[row], expected[row]
        assert set(found.indices) == set(truth.indices)
        np.testing.assert_allclose(np.sort(found.data), np.sort(truth.data), rtol=1e-5, atol=1e-5)
        assert found.indices[0] == row and found.data[0] == 0.0
        assert np.all(np.diff(found.data) >= 0)  # increasing distance, as scikit-learn's rows


def test_distances_are_euclidean_in_float64():
    points = _clustered(500, 8, seed=2)
    graph = ExactKNN(n_neighbors=5).fit_transform(points)
    rows = np.repeat(np.arange(500), 6)
    exact = np.linalg.norm(points[rows].astype(np.float64) - points[graph.indices], axis=1)
    assert graph.dtype == np.float64
    np.testing.assert_allclose(graph.data, exact, rtol=1e-12)


def test_queries_other_than_the_fitted_points_and_threads_restored():
    import faiss

    points = _clustered(800, 6, seed=3)
    before = faiss.omp_get_max_threads()
    knn = ExactKNN(n_neighbors=4, n_jobs=1).fit(points[:600])
    got = knn.transform(points[600:])
    expected = KNeighborsTransformer(n_neighbors=4, algorithm="brute").fit(points[:600])
    expected = expected.transform(points[600:])
    assert got.shape == (200, 600)
    for row in range(200):
        assert set(got[row].indices) == set(expected[row].indices)
    assert faiss.omp_get_max_threads() == before
    assert knn.get_params() == {"n_neighbors": 4, "n_jobs": 1}


def test_refuses_too_few_cells_and_non_finite_values():
    with pytest.raises(ValueError, match="more than n_neighbors=15 cells"):
        ExactKNN(n_neighbors=15).fit(np.zeros((15, 3), dtype=np.float32))
    points = _clustered(100, 3, seed=4)
    points[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        ExactKNN(n_neighbors=5).fit(points)
    with pytest.raises(ValueError, match="3 columns"):
        ExactKNN(n_neighbors=5).fit(points[10:]).transform(np.zeros((4, 2)))


def test_connectivities_equal_scanpys_umap_graph_without_importing_umap():
    """exact_neighbours writes sc.pp.neighbors' graph (ExactKNN transformer, method umap)."""
    import subprocess
    import sys

    import anndata as ad
    import scanpy as sc

    from cordatlas.atlas.build import exact_neighbours

    points = _clustered(3000, 20, seed=4)
    points[1] = points[0]  # a duplicate: its nearest neighbour is at distance 0
    ours = ad.AnnData(obsm={"rep": points})
    ours.obs_names = [f"c{i}" for i in range(3000)]
    theirs = ours.copy()
    exact_neighbours(ours, use_rep="rep", n_neighbors=15, seed=0, threads=2)
    sc.pp.neighbors(theirs, n_neighbors=15, use_rep="rep", random_state=0,
                    transformer=ExactKNN(n_neighbors=15, n_jobs=2))  # fmt: skip
    assert (ours.obsp["distances"] != theirs.obsp["distances"]).nnz == 0
    got, expected = ours.obsp["connectivities"], theirs.obsp["connectivities"]
    assert got.dtype == expected.dtype == np.float32 and got.has_sorted_indices
    assert ((got != 0) != (expected != 0)).nnz == 0  # the same edges
    difference = abs(got - expected)
    assert difference.max() <= 2e-7  # float32 rounding (numpy's exp against C's expf)
    assert (difference > 0).sum() < 0.005 * got.nnz
    assert ours.uns["neighbors"]["params"] == theirs.uns["neighbors"]["params"] | {"knn": "exact"}
    assert {k: v for k, v in ours.uns["neighbors"].items() if k != "params"} == {
        k: v for k, v in theirs.uns["neighbors"].items() if k != "params"
    }
    # and without umap-learn (whose import compiles pynndescent's functions for seconds)
    code = (
        "import sys, numpy as np, anndata as ad\n"
        "from cordatlas.atlas.build import exact_neighbours\n"
        "a = ad.AnnData(obsm={'rep': np.random.default_rng(0).normal(size=(300, 5))})\n"
        "exact_neighbours(a, use_rep='rep', n_neighbors=10, seed=0)\n"
        "assert 'umap' not in sys.modules and 'pynndescent' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
