"""Doublets of one sample: artificial doublets, classifier features and scores, scrublet, calls."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)

#: Fewest cells doublets are scored on; below it the sample's doublets are not called (and the log says so).
MIN_CELLS_FOR_DOUBLETS = 100
MIN_CELLS_FOR_SCRUBLET = MIN_CELLS_FOR_DOUBLETS  # the name before the classifier was added

#: Doublet-scoring methods: "classifier" (default, after scDblFinder) or "scrublet". On the
#: simulated demo, scrublet's embedding (normalised counts, not logged) left many doublets of two
#: related types (CD4 + CD8 T) among singlets; the classifier's log-normalised one did not.
DOUBLET_METHODS = ("classifier", "scrublet")

#: Rules for choosing the cut on the doublet score (see :func:`call_doublets`).
DOUBLET_THRESHOLD_METHODS = ("expected_rate", "scrublet")


def simulate_doublets(
    counts: sp.spmatrix, *, n_doublets: int, rng: np.random.Generator
) -> sp.csr_matrix:
    """Artificial doublets: the raw counts of two cells drawn at random (with replacement) summed.

    Random pairs include pairs of one type, so the classifier sees homotypic doublets too, whose
    only trace is about twice a cell's UMIs and detected genes.
    """
    counts = sp.csr_matrix(counts)
    first = rng.integers(0, counts.shape[0], size=n_doublets)
    second = rng.integers(0, counts.shape[0], size=n_doublets)
    return (counts[first] + counts[second]).tocsr()


def doublet_features(
    counts: sp.spmatrix,
    artificial: sp.spmatrix,
    *,
    n_top_genes: int = 1000,
    n_pcs: int = 20,
    n_pcs_as_features: int = 10,
    knn_sizes: Sequence[int] = (3, 10, 25),
    seed: int = 0,
) -> pd.DataFrame:
    """Per-barcode features for the doublet classifier, real cells first, then artificial doublets.

    Cells and artificial doublets are normalised to 10,000 counts and log1p-transformed; the
    `n_top_genes` most variable genes among the real cells are scaled with the real cells' mean
    and standard deviation, and a PCA fitted on the real cells projects both. Features, as in
    scDblFinder (Germain et al. 2021): the fraction of artificial doublets among each barcode's
    k nearest neighbours for each k in `knn_sizes` (`ratio_k<k>`), that fraction weighted by
    inverse distance (`ratio_weighted`), the distances to the nearest artificial doublet and to
    the nearest real cell, `log1p_total_counts`, `log1p_n_genes_by_counts` and the first
    `n_pcs_as_features` PCs (so that library size is judged against a cell's own kind of cell).
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    combined = sp.vstack([sp.csr_matrix(counts), sp.csr_matrix(artificial)]).tocsr()
    combined = combined.astype(np.float64)
    n_real = counts.shape[0]
    n_total = combined.shape[0]
    total = np.asarray(combined.sum(axis=1)).ravel()
    n_genes = np.diff(combined.indptr)
    # each barcode scaled to 10,000 counts in place (the products of a diagonal matrix product,
    # without its copy of the matrix), then log1p
    lognorm = combined
    lognorm.data *= np.repeat(1e4 / np.maximum(total, 1.0), n_genes)
    np.log1p(lognorm.data, out=lognorm.data)
    real = lognorm[:n_real]
    mean = np.asarray(real.mean(axis=0)).ravel()
    var = np.asarray(real.multiply(real).mean(axis=0)).ravel() - mean**2
    top = np.sort(np.argsort(-var, kind="stable")[: min(n_top_genes, combined.shape[1])])
    scaled = lognorm[:, top].toarray()
    sd = np.sqrt(np.maximum(var[top], 0.0))
    scaled = (scaled - mean[top]) / np.where(sd > 0, sd, 1.0)
    n_comps = max(1, min(n_pcs, n_real - 1, top.size))
    pcs = PCA(n_components=n_comps, random_state=seed).fit(scaled[:n_real]).transform(scaled)

    k_max = min(max(knn_sizes), n_total - 1)
    dist, idx = NearestNeighbors(n_neighbors=k_max + 1).fit(pcs).kneighbors(pcs)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop each barcode itself
    is_artificial = (idx >= n_real).astype(float)
    features: dict[str, np.ndarray] = {}
    for k in knn_sizes:
        features[f"ratio_k{k}"] = is_artificial[:, : min(k, k_max)].mean(axis=1)
    weight = 1.0 / (dist + 1e-3)
    features["ratio_weighted"] = (is_artificial * weight).sum(axis=1) / weight.sum(axis=1)
    # a barcode with no artificial (real) neighbour within k_max lies beyond the k_max-th one
    beyond = dist[:, -1] * 1.5
    features["dist_nearest_artificial"] = np.where(
        is_artificial.any(axis=1), np.where(is_artificial == 1, dist, np.inf).min(axis=1), beyond
    )
    features["dist_nearest_real"] = np.where(
        (is_artificial == 0).any(axis=1),
        np.where(is_artificial == 0, dist, np.inf).min(axis=1),
        beyond,
    )
    features["log1p_total_counts"] = np.log1p(total)
    features["log1p_n_genes_by_counts"] = np.log1p(n_genes)
    for j in range(min(n_pcs_as_features, n_comps)):
        features[f"PC{j + 1}"] = pcs[:, j]
    return pd.DataFrame(features)


def classifier_doublet_scores(
    counts: sp.spmatrix,
    *,
    expected_doublet_rate: float,
    seed: int,
    artificial_ratio: float = 1.0,
    n_rounds: int = 3,
    n_folds: int = 3,
    n_trees: int = 50,
) -> np.ndarray:
    """Doublet scores in [0, 1] from a classifier of real cells against artificial doublets.

    The approach of scDblFinder (Germain et al. 2021, F1000Research 10:979): artificial doublets
    (:func:`simulate_doublets`, `artificial_ratio` x cells) are mixed with the real cells,
    :func:`doublet_features` describes every barcode, and gradient-boosted trees learn to tell
    artificial doublets from real cells; a real cell's score is the predicted probability that
    it is a doublet. Besides the neighbourhood features, the classifier weighs library size and
    detected genes against the cell's position in expression space: a doublet of two cells of
    one type has no mixed profile, only about twice that type's UMIs and more genes.

    Real cells are scored out of fold (`n_folds`-fold cross-fitting), so no cell is scored by a
    model that saw it. Over `n_rounds`, the real cells above the expected-rate quantile of the
    previous round are left out of the next round's negatives (they are likely doublets).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    n_real = counts.shape[0]
    n_artificial = max(1, int(round(artificial_ratio * n_real)))
    artificial = simulate_doublets(counts, n_doublets=n_artificial, rng=rng)
    features = doublet_features(counts, artificial, seed=seed).to_numpy()
    label = np.r_[np.zeros(n_real, dtype=int), np.ones(n_artificial, dtype=int)]
    trainable = np.ones(label.size, dtype=bool)
    n_folds = max(2, min(n_folds, n_real, n_artificial))
    scores = np.zeros(label.size)
    for round_ in range(n_rounds):
        scores = np.zeros(label.size)
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed + round_)
        for train, test in folds.split(features, label):
            train = train[trainable[train]]
            model = HistGradientBoostingClassifier(
                max_iter=n_trees, max_depth=4, learning_rate=0.1, random_state=seed
            )
            # one OpenMP thread: the trees are small, and a thread per core in every parallel
            # QC job oversubscribes the machine (fits then take 10-50x longer)
            with threadpool_limits(limits=1, user_api="openmp"):
                model.fit(features[train], label[train])
                scores[test] = model.predict_proba(features[test])[:, 1]
        likely = scores[:n_real] > np.quantile(scores[:n_real], 1.0 - expected_doublet_rate)
        trainable = np.r_[~likely, np.ones(n_artificial, dtype=bool)]
    return scores[:n_real]


def scrublet_doublet_scores(
    adata: ad.AnnData, *, expected_doublet_rate: float, seed: int
) -> tuple[np.ndarray, float | None]:
    """Scrublet scores (Wolock et al. 2019, scanpy's implementation) and scrublet's own threshold."""
    work = ad.AnnData(X=adata.X.copy(), obs=pd.DataFrame(index=adata.obs_names))
    work.var_names = adata.var_names
    sc.pp.scrublet(
        work,
        expected_doublet_rate=expected_doublet_rate,
        random_state=seed,
        n_prin_comps=min(30, work.n_obs - 1, work.n_vars - 1),
        verbose=False,
    )
    automatic = work.uns["scrublet"].get("threshold")
    if automatic is not None and not np.isfinite(automatic):
        automatic = None
    return work.obs["doublet_score"].to_numpy(dtype=float), automatic


def check_doublet_settings(*, method: str, threshold_method: str, threshold: float | None) -> None:
    """Refuse an unknown `method` or `threshold_method`, or scrublet's threshold without scrublet.

    Raises
    ------
    UserInputError
        Naming the config key (``qc.doublets.*``) and the values allowed.
    """
    if method not in DOUBLET_METHODS:
        raise UserInputError(
            f"qc.doublets.method is {method!r}; use one of {', '.join(DOUBLET_METHODS)}."
        )
    if threshold_method not in DOUBLET_THRESHOLD_METHODS:
        raise UserInputError(
            f"qc.doublets.threshold_method is {threshold_method!r}; use one of "
            f"{', '.join(DOUBLET_THRESHOLD_METHODS)}."
        )
    if threshold is None and threshold_method == "scrublet" and method != "scrublet":
        raise UserInputError(
            f"qc.doublets.threshold_method 'scrublet' (scrublet's automatic threshold) needs "
            f"qc.doublets.method 'scrublet', not {method!r}; set threshold_method: expected_rate "
            "or a numeric qc.doublets.threshold."
        )


def call_doublets(
    adata: ad.AnnData,
    *,
    expected_doublet_rate: float,
    threshold: float | None,
    threshold_method: str,
    method: str,
    seed: int,
) -> tuple[pd.DataFrame, float | None, str]:
    """Doublet scores and calls for the cells of one sample (X must hold raw counts).

    Scores come from `method`: "classifier" (:func:`classifier_doublet_scores`, after
    scDblFinder, Germain et al. 2021) or "scrublet" (Wolock et al. 2019). The cut on the score
    is, in order of precedence: `threshold` when given; else with
    `threshold_method="expected_rate"` the score above which the expected number of doublets
    lies (`expected_doublet_rate` x cells, the convention of DoubletFinder, McGinnis et al.
    2019); else (`threshold_method="scrublet"`, scrublet scores only) scrublet's automatic
    threshold (the minimum between the modes of simulated doublet scores), which needs a
    clearly bimodal distribution and is conservative on samples of a few thousand cells.
    The arguments are config ``qc.doublets`` (:class:`cordatlas.params.DoubletParams`).

    Returns
    -------
    A frame with `doublet_score` and `predicted_doublet` per cell, the threshold used, and a
    one-line note (e.g. why calling was skipped).

    Raises
    ------
    UserInputError
        An unknown `method` or `threshold_method`, or scrublet's automatic threshold asked of
        the classifier (:func:`check_doublet_settings`).
    """
    check_doublet_settings(method=method, threshold_method=threshold_method, threshold=threshold)
    result = pd.DataFrame(
        {"doublet_score": np.nan, "predicted_doublet": False}, index=adata.obs_names
    )
    if adata.n_obs < MIN_CELLS_FOR_DOUBLETS:
        note = (
            f"doublets not called: {adata.n_obs} cells passed the metric thresholds, "
            f"doublet calling ({method}) needs at least {MIN_CELLS_FOR_DOUBLETS}"
        )
        log.warning(note)
        return result, None, note
    if method == "classifier":
        scores = classifier_doublet_scores(
            adata.X, expected_doublet_rate=expected_doublet_rate, seed=seed
        )
        automatic = None
    else:
        scores, automatic = scrublet_doublet_scores(
            adata, expected_doublet_rate=expected_doublet_rate, seed=seed
        )
    result["doublet_score"] = scores
    if threshold is not None:
        used, source = float(threshold), "fixed (config qc.doublets.threshold)"
    elif threshold_method == "expected_rate":
        return _call_expected_rate(result, scores, rate=expected_doublet_rate, method=method)
    else:
        used = automatic
        source = "automatic (scrublet)"
        if used is None:
            note = (
                "scrublet found no threshold (score distribution not bimodal); no doublets called"
            )
            log.warning(note)
            return result, None, note
    result["predicted_doublet"] = scores > used
    return result, float(used), f"{method} doublet score threshold {used:.3f}, {source}"


def _call_expected_rate(
    result: pd.DataFrame, scores: np.ndarray, *, rate: float, method: str
) -> tuple[pd.DataFrame, float | None, str]:
    """Call the `rate` x cells highest-scoring cells doublets (in `result`, in place)."""
    n_expected = min(int(round(rate * scores.size)), scores.size)
    if n_expected == 0:
        return result, None, "expected doublets round to 0 cells; no doublets called"
    # by rank, ties broken by cell order (scrublet scores are k-NN fractions and tie often)
    called = np.argsort(-scores, kind="stable")[:n_expected]
    result.iloc[called, result.columns.get_loc("predicted_doublet")] = True
    used = float(scores[called].min())
    note = (
        f"{method} doublet score threshold {used:.3f}, expected rate: the {n_expected} "
        f"highest-scoring cells ({rate:g} x {scores.size}) called"
    )
    return result, used, note
