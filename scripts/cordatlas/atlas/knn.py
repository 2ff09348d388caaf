"""Exact Euclidean k-nearest-neighbour search for scanpy's neighbours graph.

:class:`ExactKNN` is a scikit-learn transformer (scanpy's ``transformer=`` hook, as
``sklearn.neighbors.KNeighborsTransformer``) that finds every cell's exact nearest neighbours
with faiss's flat (brute-force) index (Douze et al. 2024, arXiv:2401.08281). It returns the same
graph as ``KNeighborsTransformer(algorithm="brute", mode="distance")`` at about a third of its
time: on the 100,000-cell benchmark study's Harmony embedding (83,413 cells, 30 dimensions, 2
threads, two runs each) faiss took 13.7-13.9 s and scikit-learn 35.4-41.2 s, and 99.9994 % of
the neighbours agreed (the rest ties; docs/performance.md). Distances of the neighbours found
are recomputed in float64, so the graph's weights do not carry float32 rounding: scikit-learn's float32 brute force put each cell
at a distance of up to 1e-6 from itself for 29 % of that study's cells, and UMAP's connectivity
(which measures every cell's neighbours from its nearest non-zero distance) then took that
rounding for the nearest neighbour; here a cell is at distance 0 from itself, as in scanpy's
pynndescent path.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

#: query cells per block when recomputing the neighbours' distances (bounds the float64 copy)
_BLOCK = 16_384


class ExactKNN(TransformerMixin, BaseEstimator):
    """Exact Euclidean kNN graph (faiss ``IndexFlatL2``) with the scikit-learn transformer API.

    ``transform(X)`` returns, as ``KNeighborsTransformer(mode="distance")`` does, a CSR matrix
    of shape (n queries, n fitted) with ``n_neighbors + 1`` stored entries per row (the query
    itself at distance 0 when it is among the fitted points), each row's entries in increasing
    order of distance.

    Parameters
    ----------
    n_neighbors
        Neighbours per cell besides itself (scanpy reads it with ``get_params``).
    n_jobs
        Threads faiss may use (OpenMP); restored afterwards.
    """

    def __init__(self, n_neighbors: int = 15, n_jobs: int = 1):
        self.n_neighbors = n_neighbors
        self.n_jobs = n_jobs

    def fit(self, X, y=None) -> ExactKNN:
        points = np.ascontiguousarray(X, dtype=np.float32)
        if points.ndim != 2 or points.shape[0] <= self.n_neighbors:
            raise ValueError(
                f"the kNN search needs more than n_neighbors={self.n_neighbors} cells; "
                f"got {points.shape[0] if points.ndim == 2 else 'no 2-d data'}"
            )
        if not np.isfinite(points).all():
            raise ValueError(
                "the embedding holds NaN or infinite values; the kNN search needs finite values"
            )
        self.fit_points_ = points
        self.n_features_in_ = points.shape[1]
        return self

    def transform(self, X) -> sp.csr_matrix:
        import faiss

        queries = np.ascontiguousarray(X, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have {self.n_features_in_} columns, as the fitted data")
        k = self.n_neighbors + 1
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(max(1, int(self.n_jobs)))
        try:
            index = faiss.IndexFlatL2(self.n_features_in_)
            index.add(self.fit_points_)
            _, neighbours = index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(previous)
        distances = np.empty(neighbours.shape, dtype=np.float64)
        for start in range(0, queries.shape[0], _BLOCK):
            rows = slice(start, start + _BLOCK)
            found = self.fit_points_[neighbours[rows]].astype(np.float64)
            offsets = found - queries[rows, None, :].astype(np.float64)
            distances[rows] = np.sqrt(np.einsum("ijk,ijk->ij", offsets, offsets))
        order = np.argsort(distances, axis=1, kind="stable")
        neighbours = np.take_along_axis(neighbours, order, axis=1)
        distances = np.take_along_axis(distances, order, axis=1)
        indptr = np.arange(0, queries.shape[0] * k + 1, k)
        return sp.csr_matrix(
            (distances.ravel(), neighbours.ravel(), indptr),
            shape=(queries.shape[0], self.fit_points_.shape[0]),
        )

    def fit_transform(self, X, y=None) -> sp.csr_matrix:
        return self.fit(X).transform(X)


# --------------------------------------------------------------------------------------------
# UMAP's connectivities of a kNN graph, without importing umap-learn
# --------------------------------------------------------------------------------------------

#: umap-learn's constants (umap/umap_.py, 0.5): the binary search's tolerance on the fuzzy set's
#: cardinality, and the floor of each cell's kernel width as a fraction of its mean distance.
SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3
_FLOAT32_MAX = np.float32(np.finfo(np.float32).max)


def fuzzy_connectivities(knn_indices: np.ndarray, knn_dists: np.ndarray) -> sp.csr_matrix:
    """UMAP's fuzzy simplicial set of a kNN graph: scanpy's ``connectivities`` (method "umap").

    The computation of umap-learn 0.5's ``fuzzy_simplicial_set`` for precomputed neighbours
    (McInnes et al. 2018, arXiv:1802.03426; what ``sc.pp.neighbors`` calls, with
    ``local_connectivity`` and ``set_op_mix_ratio`` 1), in numpy over all cells at once and
    in the same float32 arithmetic: each cell's distance to its nearest neighbour (rho) and
    kernel width (sigma, a 64-step binary search until the memberships sum to log2(k) within
    :data:`SMOOTH_K_TOLERANCE`), memberships ``exp(-(d - rho) / sigma)``, and their fuzzy
    union ``A + A.T - A * A.T``. umap-learn compiles its numba functions in every process
    and importing it imports pynndescent, which compiled its own for 7-9 s on the 2-core
    machine (docs/performance.md); this needs neither. The two agree to float32 rounding
    (numpy's and libm's ``expf`` may differ in the last bit): ``tests/unit/test_knn.py``.

    Parameters
    ----------
    knn_indices, knn_dists
        Cells x k: each cell's neighbours, itself first (distance 0), in increasing distance.
    """
    knn_dists = np.asarray(knn_dists, dtype=np.float32)
    n_cells, k = knn_dists.shape
    sigmas, rhos = _smooth_knn_dist(knn_dists, float(k))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gap = knn_dists - rhos[:, None]
        # the float32 quotient's exp rounded to float32 (within a bit of C's expf)
        values = np.exp((-(gap / sigmas[:, None])).astype(np.float64)).astype(np.float32)
    values = np.where((gap <= 0) | (sigmas[:, None] == 0), np.float32(1.0), values)
    values = np.where(knn_indices == np.arange(n_cells)[:, None], np.float32(0.0), values)
    rows = np.repeat(np.arange(n_cells, dtype=np.int32), k)
    result = sp.coo_matrix(
        (values.ravel(), (rows, np.asarray(knn_indices, dtype=np.int32).ravel())),
        shape=(n_cells, n_cells),
    )
    result.eliminate_zeros()
    transpose = result.transpose()
    product = result.multiply(transpose)
    result = result + transpose - product  # the fuzzy union (set_op_mix_ratio 1)
    result.eliminate_zeros()
    return sp.csr_matrix(result)


def _smooth_knn_dist(distances: np.ndarray, k: float, n_iter: int = 64):
    """umap-learn's ``smooth_knn_dist`` (local_connectivity 1, bandwidth 1) for all cells."""
    n_cells = distances.shape[0]
    target = np.log2(k)
    positive = distances > 0
    has_positive = positive.any(axis=1)
    first = np.argmax(positive, axis=1)
    rho = np.where(has_positive, distances[np.arange(n_cells), first], 0).astype(np.float32)
    lo = np.zeros(n_cells, dtype=np.float32)
    hi = np.full(n_cells, _FLOAT32_MAX, dtype=np.float32)
    mid = np.ones(n_cells, dtype=np.float32)
    gaps = distances[:, 1:] - rho[:, None]
    searching = np.arange(n_cells)
    with np.errstate(over="ignore"):
        for _ in range(n_iter):
            if searching.size == 0:
                break
            m, gap = mid[searching].astype(np.float64), gaps[searching]
            psum64 = np.zeros(searching.size)
            for j in range(gap.shape[1]):  # summed in umap-learn's order, as its numba does
                term = np.exp(-(gap[:, j].astype(np.float64) / m))
                psum64 += np.where(gap[:, j] > 0, term, 1.0)
            found = np.abs(psum64 - target) < SMOOTH_K_TOLERANCE
            rest, psum64 = searching[~found], psum64[~found]
            over = psum64 > target
            lo_r, hi_r, mid_r = lo[rest], hi[rest], mid[rest]
            hi_r = np.where(over, mid_r, hi_r)
            lo_r = np.where(over, lo_r, mid_r)
            halved = ((lo_r + hi_r) / np.float32(2.0)).astype(np.float32)
            doubled = (mid_r * np.float32(2.0)).astype(np.float32)
            mid_r = np.where(over | (hi_r < _FLOAT32_MAX), halved, doubled)
            lo[rest], hi[rest], mid[rest] = lo_r, hi_r, mid_r
            searching = rest
    result = mid.copy()
    floor = np.where(
        rho > 0,
        MIN_K_DIST_SCALE * distances.astype(np.float64).mean(axis=1),
        MIN_K_DIST_SCALE * distances.astype(np.float64).mean(),
    )
    result = np.where(result < floor, floor, result).astype(np.float32)
    return result, rho
