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
