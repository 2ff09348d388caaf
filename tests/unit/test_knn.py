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
