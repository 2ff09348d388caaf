"""Per-sample quality control: metrics, adaptive (MAD) thresholds, doublet calls, a reason per removed cell."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)

#: Order in which reasons are listed for a cell failing several rules.
REASONS = (
    "low_counts",
    "high_counts",
    "low_genes",
    "high_genes",
    "high_top20",
    "high_mt",
    "high_hb",
    "doublet",
    "sample_too_small",
)

#: Fewest cells doublets are scored on; below it the sample's doublets are not called (and the log says so).
MIN_CELLS_FOR_DOUBLETS = 100
MIN_CELLS_FOR_SCRUBLET = MIN_CELLS_FOR_DOUBLETS  # the name before the classifier was added


@dataclass(frozen=True)
class Threshold:
    """One applied threshold: metric, bounds in the metric's own units, and where they came from."""

    metric: str
    lower: float | None
    upper: float | None
    source: str  # "adaptive", "fixed (sample sheet)", "floor", "ceiling", "config" ...
    detail: str


def annotate_gene_sets(
    adata: ad.AnnData,
    *,
    mito_prefix: str,
    ribo_prefixes: Sequence[str],
    hb_pattern: str,
) -> None:
    """Flag mitochondrial, ribosomal and haemoglobin genes in `adata.var` ("mt", "ribo", "hb")."""
    names = adata.var_names.astype(str)
    adata.var["mt"] = names.str.startswith(mito_prefix)
    adata.var["ribo"] = names.str.startswith(tuple(ribo_prefixes))
    hb = re.compile(hb_pattern)
    adata.var["hb"] = [bool(hb.search(name)) for name in names]


def compute_qc_metrics(
    adata: ad.AnnData,
    *,
    mito_prefix: str = "MT-",
    ribo_prefixes: Sequence[str] = ("RPS", "RPL"),
    hb_pattern: str = r"^HB(A[12]?|B|D|G[12]|E1|M|Q1|Z)$",
) -> None:
    """Add scanpy's QC metrics to `adata.obs` in place (X must hold raw counts).

    Adds `total_counts`, `n_genes_by_counts`, their `log1p_` versions, `pct_counts_mt`,
    `pct_counts_ribo`, `pct_counts_hb` and `pct_counts_in_top_20_genes`.
    """
    annotate_gene_sets(
        adata, mito_prefix=mito_prefix, ribo_prefixes=ribo_prefixes, hb_pattern=hb_pattern
    )
    n_top = min(20, adata.n_vars)
    sc.pp.calculate_qc_metrics(
        adata, qc_vars=["mt", "ribo", "hb"], percent_top=[n_top], log1p=True, inplace=True
    )
    if n_top != 20:
        adata.obs["pct_counts_in_top_20_genes"] = adata.obs.pop(f"pct_counts_in_top_{n_top}_genes")


def mad_bounds(
    values: np.ndarray, *, nmads: float, lower: bool = True, upper: bool = True
) -> tuple[float | None, float | None]:
    """Median +/- `nmads` median absolute deviations, the MAD scaled as R's mad() and scater's isOutlier.

    The MAD is scaled by 1.4826 so that it estimates the standard deviation of normal data. A
    metric with zero MAD (every cell alike, or too few cells) gets no adaptive bound: a bound at
    the median itself would call half the cells outliers.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    median = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - median)))
    if mad == 0:
        return None, None
    return (median - nmads * mad if lower else None, median + nmads * mad if upper else None)


def _bound(*candidates: float | None, take: str) -> float | None:
    present = [c for c in candidates if c is not None and np.isfinite(c)]
    if not present:
        return None
    return max(present) if take == "max" else min(present)


def qc_thresholds(
    obs: pd.DataFrame,
    *,
    nmads: Mapping[str, float],
    max_pct_counts_mt: float,
    min_counts: float,
    min_genes: float,
    max_pct_counts_hb: float | None = None,
    fixed: Mapping[str, float | None] | None = None,
) -> list[Threshold]:
    """Thresholds for one sample, adaptive unless the sample sheet fixes them.

    Parameters
    ----------
    obs
        Per-cell QC metrics of one sample (from :func:`compute_qc_metrics`).
    nmads
        MADs per metric: keys `log1p_total_counts`, `log1p_n_genes_by_counts`,
        `pct_counts_in_top_20_genes`, `pct_counts_mt`.
    max_pct_counts_mt
        Absolute mitochondrial ceiling, applied even when the MAD bound is higher.
    min_counts, min_genes
        Absolute floors: the adaptive lower bound never goes below them, and medians and MADs
        are computed on the barcodes above both floors (when at least 10 are), so that empty
        barcodes do not drag the bounds down.
    max_pct_counts_hb
        Haemoglobin ceiling; None reports haemoglobin without filtering on it.
    fixed
        Per-sample fixed thresholds from the sample sheet (`min_counts`, `max_counts`,
        `min_genes`, `max_genes`, `max_pct_counts_mt`); a non-missing value replaces the
        adaptive bound on that side.
    """
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None and not pd.isna(v)}
    # Medians and MADs describe the sample's cells, not its empty barcodes: an unfiltered matrix
    # (Cell Ranger raw_feature_bc_matrix) would otherwise put every real cell above the upper bound.
    plausible = (obs["total_counts"] >= min_counts) & (obs["n_genes_by_counts"] >= min_genes)
    if plausible.sum() >= 10:
        obs = obs[plausible]
    thresholds = []
    for metric, log_metric, floor, low_key, high_key in (
        ("total_counts", "log1p_total_counts", min_counts, "min_counts", "max_counts"),
        ("n_genes_by_counts", "log1p_n_genes_by_counts", min_genes, "min_genes", "max_genes"),
    ):
        k = nmads[log_metric]
        lo_log, hi_log = mad_bounds(obs[log_metric].to_numpy(), nmads=k)
        adaptive_lo = float(np.expm1(lo_log)) if lo_log is not None else None
        adaptive_hi = float(np.expm1(hi_log)) if hi_log is not None else None
        if low_key in fixed:
            lower, lower_src = float(fixed[low_key]), f"fixed {low_key} (sample sheet)"
        else:
            lower = _bound(adaptive_lo, float(floor), take="max")
            lower_src = f"max(median - {k} MAD of {log_metric}, floor {floor:g})"
        if high_key in fixed:
            upper, upper_src = float(fixed[high_key]), f"fixed {high_key} (sample sheet)"
        else:
            upper = adaptive_hi
            upper_src = f"median + {k} MAD of {log_metric}" if upper is not None else "none (MAD 0)"
        source = "fixed" if (low_key in fixed or high_key in fixed) else "adaptive"
        thresholds.append(Threshold(metric, lower, upper, source, f"{lower_src}; {upper_src}"))

    k = nmads["pct_counts_in_top_20_genes"]
    _, hi = mad_bounds(obs["pct_counts_in_top_20_genes"].to_numpy(), nmads=k, lower=False)
    thresholds.append(
        Threshold(
            "pct_counts_in_top_20_genes",
            None,
            hi,
            "adaptive",
            f"median + {k} MAD (one-sided)" if hi is not None else "none (MAD 0)",
        )
    )

    if "max_pct_counts_mt" in fixed:
        thresholds.append(
            Threshold(
                "pct_counts_mt",
                None,
                float(fixed["max_pct_counts_mt"]),
                "fixed",
                "fixed max_pct_counts_mt (sample sheet)",
            )
        )
    else:
        k = nmads["pct_counts_mt"]
        _, hi = mad_bounds(obs["pct_counts_mt"].to_numpy(), nmads=k, lower=False)
        upper = _bound(hi, float(max_pct_counts_mt), take="min")
        thresholds.append(
            Threshold(
                "pct_counts_mt",
                None,
                upper,
                "adaptive",
                f"min(median + {k} MAD (one-sided), ceiling {max_pct_counts_mt:g})",
            )
        )
    if max_pct_counts_hb is not None:
        thresholds.append(
            Threshold(
                "pct_counts_hb", None, float(max_pct_counts_hb), "config", "qc.max_pct_counts_hb"
            )
        )
    return thresholds


_REASON_OF = {
    ("total_counts", "lower"): "low_counts",
    ("total_counts", "upper"): "high_counts",
    ("n_genes_by_counts", "lower"): "low_genes",
    ("n_genes_by_counts", "upper"): "high_genes",
    ("pct_counts_in_top_20_genes", "upper"): "high_top20",
    ("pct_counts_mt", "upper"): "high_mt",
    ("pct_counts_hb", "upper"): "high_hb",
}


def apply_thresholds(
    obs: pd.DataFrame,
    thresholds: Sequence[Threshold],
    *,
    top20_exempt_min_pct_hb: float | None = None,
) -> pd.DataFrame:
    """Boolean table (cells x reasons) of which threshold each cell fails.

    Cells whose haemoglobin share exceeds `top20_exempt_min_pct_hb` are not judged on the top-20
    genes %: red cells and their nucleated precursors (abundant in cord blood) spend most of their
    counts on a few globin genes by nature, not because they are damaged or empty.
    """
    flags = pd.DataFrame(False, index=obs.index, columns=list(REASONS))
    exempt = np.zeros(len(obs), dtype=bool)
    if top20_exempt_min_pct_hb is not None and "pct_counts_hb" in obs:
        exempt = obs["pct_counts_hb"].to_numpy(dtype=float) > top20_exempt_min_pct_hb
    for t in thresholds:
        values = obs[t.metric].to_numpy(dtype=float)
        if t.metric == "pct_counts_in_top_20_genes":
            values = np.where(exempt, -np.inf, values)
        if t.lower is not None:
            flags[_REASON_OF[(t.metric, "lower")]] |= values < t.lower
        if t.upper is not None:
            flags[_REASON_OF[(t.metric, "upper")]] |= values > t.upper
    return flags


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
    lognorm = (sp.diags(1e4 / np.maximum(total, 1.0)) @ combined).tocsr()
    lognorm.data = np.log1p(lognorm.data)
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


def call_doublets(
    adata: ad.AnnData,
    *,
    expected_doublet_rate: float,
    threshold: float | None,
    threshold_method: str = "expected_rate",
    method: str = "classifier",
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

    Returns
    -------
    A frame with `doublet_score` and `predicted_doublet` per cell, the threshold used, and a
    one-line note (e.g. why calling was skipped).

    Raises
    ------
    UserInputError
        An unknown `method` or `threshold_method`, or scrublet's automatic threshold asked of
        the classifier.
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
        n_expected = min(int(round(expected_doublet_rate * scores.size)), scores.size)
        if n_expected == 0:
            return result, None, "expected doublets round to 0 cells; no doublets called"
        # by rank, ties broken by cell order (scrublet scores are k-NN fractions and tie often)
        called = np.argsort(-scores, kind="stable")[:n_expected]
        result.iloc[called, result.columns.get_loc("predicted_doublet")] = True
        used = float(scores[called].min())
        note = (
            f"{method} doublet score threshold {used:.3f}, expected rate: the {n_expected} "
            f"highest-scoring cells ({expected_doublet_rate:g} x {scores.size}) called"
        )
        return result, used, note
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


@dataclass(frozen=True)
class SampleQC:
    """Result of QC on one sample."""

    adata: ad.AnnData  # the cells kept, all genes, metrics in obs
    cells: pd.DataFrame  # every cell: metrics, doublet score, pass flag, reasons
    thresholds: pd.DataFrame  # one row per applied threshold, with how many cells it removed
    summary: dict[str, Any]  # one row of the qc_summary table


def run_sample_qc(
    adata: ad.AnnData,
    *,
    sample: str,
    mito_prefix: str,
    ribo_prefixes: Sequence[str],
    hb_pattern: str,
    nmads: Mapping[str, float],
    max_pct_counts_mt: float,
    min_counts: float,
    min_genes: float,
    max_pct_counts_hb: float | None,
    top20_exempt_min_pct_hb: float | None,
    remove_doublets: bool,
    expected_doublet_rate: float,
    doublet_threshold: float | None,
    min_cells_per_sample: int,
    doublet_threshold_method: str = "expected_rate",
    doublet_method: str = "classifier",
    on_small_sample: str,
    fixed: Mapping[str, float | None] | None = None,
    seed: int = 0,
) -> SampleQC:
    """Run QC on one sample's raw counts, in a fixed order.

    1. metrics (:func:`compute_qc_metrics`);
    2. thresholds per metric (:func:`qc_thresholds`), each cell flagged with every rule it fails;
    3. doublet scores (:func:`call_doublets`, `doublet_method` "classifier" or "scrublet") on
       the cells passing step 2 (doublets scored among plausible cells only);
    4. cells kept = no failed rule (doublet calls count only when `remove_doublets`).

    Raises
    ------
    UserInputError
        When fewer than `min_cells_per_sample` cells remain and `on_small_sample` is "fail",
        or the doublet settings are invalid (see :func:`call_doublets`).
    """
    adata = adata.copy()
    compute_qc_metrics(
        adata, mito_prefix=mito_prefix, ribo_prefixes=ribo_prefixes, hb_pattern=hb_pattern
    )
    thresholds = qc_thresholds(
        adata.obs,
        nmads=nmads,
        max_pct_counts_mt=max_pct_counts_mt,
        min_counts=min_counts,
        min_genes=min_genes,
        max_pct_counts_hb=max_pct_counts_hb,
        fixed=fixed,
    )
    flags = apply_thresholds(adata.obs, thresholds, top20_exempt_min_pct_hb=top20_exempt_min_pct_hb)
    metric_pass = ~flags.any(axis=1).to_numpy()
    doublets, doublet_cut, doublet_note = call_doublets(
        adata[metric_pass],
        expected_doublet_rate=expected_doublet_rate,
        threshold=doublet_threshold,
        threshold_method=doublet_threshold_method,
        method=doublet_method,
        seed=seed,
    )
    adata.obs["doublet_score"] = doublets["doublet_score"].reindex(adata.obs_names)
    adata.obs["predicted_doublet"] = (
        doublets["predicted_doublet"].reindex(adata.obs_names).fillna(False).astype(bool)
    )
    if remove_doublets:
        flags["doublet"] = adata.obs["predicted_doublet"].to_numpy()
    keep = ~flags.any(axis=1).to_numpy()
    n_passed = int(keep.sum())
    dropped = False
    if n_passed < min_cells_per_sample:
        removed = ", ".join(f"{r} {int(flags[r].sum())}" for r in REASONS if flags[r].any())
        message = (
            f"sample {sample!r}: {n_passed} of {adata.n_obs} cells passed QC, fewer than "
            f"qc.min_cells_per_sample={min_cells_per_sample} (removed: {removed or 'none'}). "
            "Check the sample's data and thresholds in results/qc, lower "
            "qc.min_cells_per_sample, or set qc.on_small_sample: drop to exclude it."
        )
        if on_small_sample == "fail":
            raise UserInputError(message)
        log.warning(
            "sample %r: %d of %d cells passed QC, fewer than qc.min_cells_per_sample=%d; "
            "dropping the sample (qc.on_small_sample: drop)",
            sample,
            n_passed,
            adata.n_obs,
            min_cells_per_sample,
        )
        dropped = True
        flags["sample_too_small"] = keep
        keep = np.zeros(adata.n_obs, dtype=bool)
    reasons = flags.apply(lambda r: ";".join(c for c in REASONS if r[c]), axis=1)

    metric_cols = [
        "total_counts",
        "n_genes_by_counts",
        "pct_counts_mt",
        "pct_counts_ribo",
        "pct_counts_hb",
        "pct_counts_in_top_20_genes",
        "doublet_score",
        "predicted_doublet",
    ]
    cells = adata.obs[["barcode"] if "barcode" in adata.obs else []].copy()
    cells.insert(0, "sample", sample)
    cells = cells.join(adata.obs[metric_cols])
    cells["passed_qc"] = keep
    cells["qc_reasons"] = reasons.where(~keep, "")
    cells.index.name = "cell"

    threshold_rows = []
    for t in thresholds:
        row = asdict(t)
        row["sample"] = sample
        if t.metric == "pct_counts_in_top_20_genes" and top20_exempt_min_pct_hb is not None:
            row["detail"] += f"; cells with pct_counts_hb > {top20_exempt_min_pct_hb:g} exempt"
        threshold_rows.append(row)
    doublet_source = (
        doublet_method if remove_doublets else f"{doublet_method} (reported, not removed)"
    )
    threshold_rows.append(
        {
            "sample": sample,
            "metric": "doublet_score",
            "lower": None,
            "upper": doublet_cut,
            "source": doublet_source,
            "detail": doublet_note,
        }
    )
    threshold_table = pd.DataFrame(threshold_rows)[
        ["sample", "metric", "lower", "upper", "source", "detail"]
    ]

    n_kept = int(keep.sum())
    summary: dict[str, Any] = {"sample": sample, "cells_in": adata.n_obs}
    for reason in REASONS:
        summary[f"removed_{reason}"] = int(flags[reason].sum())
    summary["removed_total"] = int((~keep).sum())
    summary["cells_out"] = n_kept
    summary["predicted_doublets"] = int(adata.obs["predicted_doublet"].sum())
    for t in thresholds:
        summary[f"{t.metric}_lower"] = t.lower
        summary[f"{t.metric}_upper"] = t.upper
    summary["doublet_threshold"] = doublet_cut
    summary["dropped_sample"] = dropped

    kept = adata[keep].copy()
    kept.uns["qc"] = {
        "sample": sample,
        "dropped_sample": dropped,
        "doublet_note": doublet_note,
    }
    return SampleQC(adata=kept, cells=cells, thresholds=threshold_table, summary=summary)
