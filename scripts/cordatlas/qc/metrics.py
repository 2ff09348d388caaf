"""QC metrics of one sample: gene-set flags, scanpy's metrics, MAD bounds, thresholds and a reason per cell."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

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


@dataclass(frozen=True)
class Threshold:
    """One applied threshold: metric, bounds in the metric's own units, and where they came from."""

    metric: str
    lower: float | None
    upper: float | None
    source: str  # "adaptive", "fixed (sample sheet)", "floor", "ceiling", "config" ...
    detail: str


#: Metric of the rule that judges haemoglobin-rich cells' library size (see `hb_rich_cells`).
COUNTS_EXCLUDING_HB = "total_counts_excluding_hb"


def hb_rich_cells(obs: pd.DataFrame, *, min_pct_hb: float | None) -> np.ndarray:
    """Haemoglobin-rich cells: more than `min_pct_hb` % of counts on haemoglobin genes.

    The one definition every hb-aware rule uses (config ``qc.hb_rich_min_pct_hb``): red cells
    and nucleated red cells (abundant in cord blood) put most of their counts on a few globin
    genes by nature. None (or no ``pct_counts_hb`` column) marks no cell.
    """
    if min_pct_hb is None or "pct_counts_hb" not in obs:
        return np.zeros(len(obs), dtype=bool)
    return obs["pct_counts_hb"].to_numpy(dtype=float) > min_pct_hb


def counts_excluding_hb(obs: pd.DataFrame) -> np.ndarray:
    """Each cell's total counts outside haemoglobin genes (from total_counts and pct_counts_hb)."""
    total = obs["total_counts"].to_numpy(dtype=float)
    if "pct_counts_hb" not in obs:
        return total
    return total * (1.0 - obs["pct_counts_hb"].to_numpy(dtype=float) / 100.0)


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
    mito_prefix: str,
    ribo_prefixes: Sequence[str],
    hb_pattern: str,
) -> None:
    """Add scanpy's QC metrics to `adata.obs` in place (X must hold raw counts).

    Adds `total_counts`, `n_genes_by_counts`, their `log1p_` versions, `pct_counts_mt`,
    `pct_counts_ribo`, `pct_counts_hb` and `pct_counts_in_top_20_genes`. The gene sets come
    from config ``qc`` (`mito_prefix`, `ribo_prefixes`, `hb_pattern`; see
    :class:`cordatlas.params.QCParams`).
    """
    import scanpy as sc  # here, not at import: plot_qc_sample reads this module's names only

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
    hb_rich_min_pct_hb: float | None = None,
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
    hb_rich_min_pct_hb
        Haemoglobin % above which a cell is hb-rich (:func:`hb_rich_cells`). Medians and MADs
        are then computed without hb-rich cells (when at least 10 others remain), and one more
        threshold, ``total_counts_excluding_hb``, carries the total-counts upper bound that
        hb-rich cells are judged on with their counts outside haemoglobin genes
        (:func:`apply_thresholds`). None treats every cell alike.
    """
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None and not pd.isna(v)}
    obs = _reference_cells(
        obs, min_counts=min_counts, min_genes=min_genes, hb_rich_min_pct_hb=hb_rich_min_pct_hb
    )
    thresholds = [
        _size_threshold(obs, "total_counts", floor=min_counts, nmads=nmads, fixed=fixed),
        _size_threshold(obs, "n_genes_by_counts", floor=min_genes, nmads=nmads, fixed=fixed),
        _top20_threshold(obs, nmads=nmads),
        _mt_threshold(obs, nmads=nmads, ceiling=max_pct_counts_mt, fixed=fixed),
    ]
    if max_pct_counts_hb is not None:
        thresholds.append(
            Threshold(
                "pct_counts_hb", None, float(max_pct_counts_hb), "config", "qc.max_pct_counts_hb"
            )
        )
    if hb_rich_min_pct_hb is not None:
        thresholds.append(_hb_rich_counts_threshold(thresholds[0], hb_rich_min_pct_hb))
    return thresholds


def _reference_cells(
    obs: pd.DataFrame,
    *,
    min_counts: float,
    min_genes: float,
    hb_rich_min_pct_hb: float | None,
) -> pd.DataFrame:
    """The cells whose medians and MADs set the adaptive bounds.

    Not the empty barcodes: an unfiltered matrix (Cell Ranger raw_feature_bc_matrix) would
    otherwise put every real cell above the upper bound. Not the hb-rich cells either: their
    globin-inflated totals and top-20 shares would widen the bounds of every other cell. Each
    exclusion applies only when at least 10 cells remain.
    """
    plausible = (obs["total_counts"] >= min_counts) & (obs["n_genes_by_counts"] >= min_genes)
    if plausible.sum() >= 10:
        obs = obs[plausible]
    nucleated = ~hb_rich_cells(obs, min_pct_hb=hb_rich_min_pct_hb)
    if nucleated.sum() >= 10:
        obs = obs[nucleated]
    return obs


def _hb_rich_counts_threshold(total_counts: Threshold, min_pct_hb: float) -> Threshold:
    """The total-counts upper bound, applied to hb-rich cells' counts outside haemoglobin genes.

    A high-counts outlier is removed as a likely multiplet; globin transcripts make a red cell's
    library large without a second cell in the droplet, so an hb-rich cell is judged on the rest
    of its transcriptome against the bound every other cell meets.
    """
    return Threshold(
        COUNTS_EXCLUDING_HB,
        None,
        total_counts.upper,
        "hb-rich cells",
        f"cells with pct_counts_hb > {min_pct_hb:g}: total_counts upper bound applied to their "
        "counts outside haemoglobin genes (low side and other rules as for every cell)",
    )


#: Sample-sheet keys of the fixed lower and upper bound of each library-size metric.
_FIXED_KEYS = {
    "total_counts": ("min_counts", "max_counts"),
    "n_genes_by_counts": ("min_genes", "max_genes"),
}


def _size_threshold(
    obs: pd.DataFrame,
    metric: str,
    *,
    floor: float,
    nmads: Mapping[str, float],
    fixed: Mapping[str, float],
) -> Threshold:
    """Two-sided bound of a library-size metric, MADs on its log1p, each side fixable."""
    log_metric = f"log1p_{metric}"
    low_key, high_key = _FIXED_KEYS[metric]
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
    return Threshold(metric, lower, upper, source, f"{lower_src}; {upper_src}")


def _top20_threshold(obs: pd.DataFrame, *, nmads: Mapping[str, float]) -> Threshold:
    """One-sided upper bound on the share of counts in the top 20 genes."""
    k = nmads["pct_counts_in_top_20_genes"]
    _, hi = mad_bounds(obs["pct_counts_in_top_20_genes"].to_numpy(), nmads=k, lower=False)
    return Threshold(
        "pct_counts_in_top_20_genes",
        None,
        hi,
        "adaptive",
        f"median + {k} MAD (one-sided)" if hi is not None else "none (MAD 0)",
    )


def _mt_threshold(
    obs: pd.DataFrame,
    *,
    nmads: Mapping[str, float],
    ceiling: float,
    fixed: Mapping[str, float],
) -> Threshold:
    """One-sided mitochondrial bound: the sample sheet's, else min(MAD bound, the ceiling)."""
    if "max_pct_counts_mt" in fixed:
        return Threshold(
            "pct_counts_mt",
            None,
            float(fixed["max_pct_counts_mt"]),
            "fixed",
            "fixed max_pct_counts_mt (sample sheet)",
        )
    k = nmads["pct_counts_mt"]
    _, hi = mad_bounds(obs["pct_counts_mt"].to_numpy(), nmads=k, lower=False)
    return Threshold(
        "pct_counts_mt",
        None,
        _bound(hi, float(ceiling), take="min"),
        "adaptive",
        f"min(median + {k} MAD (one-sided), ceiling {ceiling:g})",
    )


_REASON_OF = {
    ("total_counts", "lower"): "low_counts",
    ("total_counts", "upper"): "high_counts",
    ("n_genes_by_counts", "lower"): "low_genes",
    ("n_genes_by_counts", "upper"): "high_genes",
    ("pct_counts_in_top_20_genes", "upper"): "high_top20",
    ("pct_counts_mt", "upper"): "high_mt",
    ("pct_counts_hb", "upper"): "high_hb",
    (COUNTS_EXCLUDING_HB, "upper"): "high_counts",
}


def apply_thresholds(
    obs: pd.DataFrame,
    thresholds: Sequence[Threshold],
    *,
    hb_rich_min_pct_hb: float | None = None,
) -> pd.DataFrame:
    """Boolean table (cells x reasons) of which threshold each cell fails.

    Haemoglobin-rich cells (:func:`hb_rich_cells`) are not judged on the top-20 genes %: red
    cells and their nucleated precursors (abundant in cord blood) spend most of their counts on a
    few globin genes by nature, not because they are damaged or empty. When the thresholds hold
    a ``total_counts_excluding_hb`` bound (:func:`qc_thresholds`), hb-rich cells meet it with
    their counts outside haemoglobin genes instead of the total-counts upper bound.
    """
    flags = pd.DataFrame(False, index=obs.index, columns=list(REASONS))
    hb_rich = hb_rich_cells(obs, min_pct_hb=hb_rich_min_pct_hb)
    own_size_rule = any(t.metric == COUNTS_EXCLUDING_HB for t in thresholds)
    for t in thresholds:
        if t.metric == COUNTS_EXCLUDING_HB:
            values = np.where(hb_rich, counts_excluding_hb(obs), -np.inf)
        else:
            values = obs[t.metric].to_numpy(dtype=float)
        if t.metric == "pct_counts_in_top_20_genes":
            values = np.where(hb_rich, -np.inf, values)
        if t.lower is not None:
            flags[_REASON_OF[(t.metric, "lower")]] |= values < t.lower
        if t.upper is not None:
            upper = values
            if t.metric == "total_counts" and own_size_rule:
                upper = np.where(hb_rich, -np.inf, values)
            flags[_REASON_OF[(t.metric, "upper")]] |= upper > t.upper
    return flags
