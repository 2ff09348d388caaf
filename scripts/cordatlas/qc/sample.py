"""Per-sample quality control: metrics, thresholds and doublets (qc.metrics, qc.doublets) in one pass.

:func:`run_sample_qc` checks the settings, computes the flags (one per reason and cell), then
formats the per-cell table, the thresholds table, the summary row and the kept cells.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from cordatlas.errors import UserInputError
from cordatlas.params import QCParams
from cordatlas.qc.doublets import call_doublets, check_doublet_settings
from cordatlas.qc.metrics import (
    COUNTS_EXCLUDING_HB,
    REASONS,
    Threshold,
    apply_thresholds,
    compute_qc_metrics,
    hb_rich_cells,
    qc_thresholds,
)

__all__ = ["REASONS", "SampleQC", "run_sample_qc"]

log = logging.getLogger(__name__)

#: Per-cell metric columns of the cells table, after `sample` (and `barcode` when present).
CELL_COLUMNS = (
    "total_counts",
    "n_genes_by_counts",
    "pct_counts_mt",
    "pct_counts_ribo",
    "pct_counts_hb",
    "pct_counts_in_top_20_genes",
    "hb_rich",
    "doublet_score",
    "predicted_doublet",
)

#: Columns of the thresholds table.
THRESHOLD_COLUMNS = ("sample", "metric", "lower", "upper", "source", "detail")


@dataclass(frozen=True)
class SampleQC:
    """Result of QC on one sample."""

    adata: ad.AnnData  # the cells kept, all genes, metrics in obs
    cells: pd.DataFrame  # every cell: metrics, doublet score, pass flag, reasons
    thresholds: pd.DataFrame  # one row per applied threshold (doublet score last)
    summary: dict[str, Any]  # one row of the qc_summary table


@dataclass(frozen=True)
class _Calls:
    """What the compute step decided: the thresholds, every cell's flags, who is kept."""

    thresholds: list[Threshold]
    flags: pd.DataFrame  # cells x REASONS, True where the cell fails that rule
    keep: np.ndarray
    hb_rich: np.ndarray  # cells above qc.hb_rich_min_pct_hb haemoglobin %
    dropped: bool
    doublet_cut: float | None
    doublet_note: str
    small_sample: str = ""  # "" (enough cells), or what was decided: fail, drop, keep


def run_sample_qc(
    adata: ad.AnnData,
    *,
    sample: str,
    params: QCParams,
    fixed: Mapping[str, float | None] | None,
    seed: int,
    on_small_sample: str | None = None,
) -> SampleQC:
    """Run QC on one sample's raw counts, in a fixed order.

    1. metrics (:func:`~cordatlas.qc.metrics.compute_qc_metrics`);
    2. thresholds per metric (:func:`~cordatlas.qc.metrics.qc_thresholds`), each cell flagged
       with every rule it fails;
    3. doublet scores (:func:`~cordatlas.qc.doublets.call_doublets`, ``params.doublets.method``
       "classifier" or "scrublet") on the cells passing step 2 (doublets scored among
       plausible cells only);
    4. cells kept = no failed rule (doublet calls count only when ``params.doublets.remove``).

    Haemoglobin-rich cells (``params.hb_rich_min_pct_hb``) skip the top-20 rule and meet the
    high-counts bound with their counts outside haemoglobin genes; the summary counts how many
    of them were kept and removed per reason, and the log says so.

    Parameters
    ----------
    adata
        One sample's cells, raw counts in X (not modified).
    sample
        The sample id, written in every table.
    params
        Config ``qc`` (:class:`cordatlas.params.QCParams`).
    fixed
        The sample sheet's fixed thresholds for this sample (`min_counts`, `max_counts`,
        `min_genes`, `max_genes`, `max_pct_counts_mt`; missing values stay adaptive), or None.
    seed
        Seed of the doublet scores.
    on_small_sample
        What to do when fewer than ``params.min_cells_per_sample`` cells remain, for this sample
        (the sheet's ``on_small_sample``): "fail", "drop" or "keep"; None uses
        ``params.on_small_sample``. "fail" never raises here: every table is written (the
        summary's ``small_sample`` says "fail") and :func:`check_small_samples` stops the run
        once all samples are summarised, so the evidence stays where its message points.

    Raises
    ------
    UserInputError
        When the doublet settings are invalid.
    """
    doublets = params.doublets
    check_doublet_settings(
        method=doublets.method,
        threshold_method=doublets.threshold_method,
        threshold=doublets.threshold,
    )
    adata = adata.copy()
    decision = on_small_sample or params.on_small_sample
    calls = _compute_calls(
        adata, sample=sample, params=params, fixed=fixed, seed=seed, on_small_sample=decision
    )
    kept = adata[calls.keep].copy()
    kept.uns["qc"] = {
        "sample": sample,
        "dropped_sample": calls.dropped,
        "doublet_note": calls.doublet_note,
    }
    return SampleQC(
        adata=kept,
        cells=_cells_table(adata, calls, sample=sample),
        thresholds=_thresholds_table(calls, sample=sample, params=params),
        summary=_summary_row(adata, calls, sample=sample),
    )


# --------------------------------------------------------------------------------------------
# Compute: metrics, flags, doublets, the small-sample rule (adds metrics to adata.obs)
# --------------------------------------------------------------------------------------------
def _compute_calls(
    adata: ad.AnnData,
    *,
    sample: str,
    params: QCParams,
    fixed: Mapping[str, float | None] | None,
    seed: int,
    on_small_sample: str,
) -> _Calls:
    compute_qc_metrics(
        adata,
        mito_prefix=params.mito_prefix,
        ribo_prefixes=params.ribo_prefixes,
        hb_pattern=params.hb_pattern,
    )
    thresholds = qc_thresholds(
        adata.obs,
        nmads=params.nmads,
        max_pct_counts_mt=params.max_pct_counts_mt,
        min_counts=params.min_counts,
        min_genes=params.min_genes,
        max_pct_counts_hb=params.max_pct_counts_hb,
        fixed=fixed,
        hb_rich_min_pct_hb=params.hb_rich_min_pct_hb,
    )
    adata.obs["hb_rich"] = hb_rich_cells(adata.obs, min_pct_hb=params.hb_rich_min_pct_hb)
    flags = apply_thresholds(adata.obs, thresholds, hb_rich_min_pct_hb=params.hb_rich_min_pct_hb)
    doublet_cut, doublet_note = _flag_doublets(adata, flags, params=params, seed=seed)
    keep = ~flags.any(axis=1).to_numpy()
    keep, small = _apply_min_cells(
        flags, keep, sample=sample, params=params, on_small_sample=on_small_sample
    )
    dropped = small == "drop"
    hb_rich = adata.obs["hb_rich"].to_numpy(dtype=bool)
    _log_hb_rich(hb_rich, flags, keep, sample=sample, params=params)
    return _Calls(thresholds, flags, keep, hb_rich, dropped, doublet_cut, doublet_note, small)


def _hb_rich_outcome(hb_rich: np.ndarray, flags: pd.DataFrame, keep: np.ndarray) -> dict[str, int]:
    """hb-rich cells: how many, kept, and removed per reason (a cell counts under each it fails)."""
    outcome = {"hb_rich_cells": int(hb_rich.sum()), "hb_rich_kept": int((hb_rich & keep).sum())}
    for reason in REASONS:
        outcome[f"hb_rich_removed_{reason}"] = int((hb_rich & flags[reason].to_numpy()).sum())
    return outcome


def _log_hb_rich(
    hb_rich: np.ndarray, flags: pd.DataFrame, keep: np.ndarray, *, sample: str, params: QCParams
) -> None:
    if params.hb_rich_min_pct_hb is None:
        log.info("sample %s: no hb-rich rule (qc.hb_rich_min_pct_hb is null)", sample)
        return
    outcome = _hb_rich_outcome(hb_rich, flags, keep)
    removed = ", ".join(
        f"{r} {outcome[f'hb_rich_removed_{r}']}" for r in REASONS if outcome[f"hb_rich_removed_{r}"]
    )
    log.info(
        "sample %s: %d hb-rich cells (pct_counts_hb > %g): %d kept; removed: %s",
        sample,
        outcome["hb_rich_cells"],
        params.hb_rich_min_pct_hb,
        outcome["hb_rich_kept"],
        removed or "none",
    )


def _flag_doublets(
    adata: ad.AnnData, flags: pd.DataFrame, *, params: QCParams, seed: int
) -> tuple[float | None, str]:
    """Score doublets among the cells passing the metric thresholds; obs and flags in place."""
    metric_pass = ~flags.any(axis=1).to_numpy()
    doublets, cut, note = call_doublets(
        adata[metric_pass],
        expected_doublet_rate=params.doublets.expected_doublet_rate,
        threshold=params.doublets.threshold,
        threshold_method=params.doublets.threshold_method,
        method=params.doublets.method,
        seed=seed,
    )
    adata.obs["doublet_score"] = doublets["doublet_score"].reindex(adata.obs_names)
    # cells not scored (failing a metric) are not doublets; fill_value keeps the column boolean
    adata.obs["predicted_doublet"] = (
        doublets["predicted_doublet"].reindex(adata.obs_names, fill_value=False).astype(bool)
    )
    if params.doublets.remove:
        flags["doublet"] = adata.obs["predicted_doublet"].to_numpy()
    return cut, note


def _apply_min_cells(
    flags: pd.DataFrame,
    keep: np.ndarray,
    *,
    sample: str,
    params: QCParams,
    on_small_sample: str,
) -> tuple[np.ndarray, str]:
    """Below qc.min_cells_per_sample: mark for failing, drop the whole sample, or keep it.

    Returns the cells kept and the decision ("" when the sample has enough cells).
    """
    n_passed, n_cells = int(keep.sum()), len(keep)
    if n_passed >= params.min_cells_per_sample:
        return keep, ""
    removed = ", ".join(f"{r} {int(flags[r].sum())}" for r in REASONS if flags[r].any())
    said = (
        f"sample {sample!r}: {n_passed} of {n_cells} cells passed QC, fewer than "
        f"qc.min_cells_per_sample={params.min_cells_per_sample} (removed: {removed or 'none'})"
    )
    if on_small_sample == "fail":
        log.error("%s; the run stops once every sample's QC is summarised", said)
        return keep, "fail"
    if on_small_sample == "keep":
        log.warning("%s; kept as it is (on_small_sample: keep)", said)
        return keep, "keep"
    log.warning("%s; dropping the sample (on_small_sample: drop)", said)
    flags["sample_too_small"] = keep
    return np.zeros(n_cells, dtype=bool), "drop"


def check_small_samples(summary: pd.DataFrame, *, qc_dir: str, min_cells: int) -> None:
    """Stop the run for every sample QC marked ``small_sample: fail``, naming its evidence.

    Runs on the summary of all samples (rule summarise_qc), after each sample's own tables were
    written, so the files the message points to exist.
    """
    if "small_sample" not in summary:
        return
    failing = summary[summary["small_sample"].fillna("").astype(str) == "fail"]
    if failing.empty:
        return
    said = "; ".join(
        f"sample {row['sample']!r}: {int(row['cells_out'])} of {int(row['cells_in'])} cells "
        f"passed QC (see {qc_dir}/{row['sample']}/cells.tsv, column qc_reasons, and "
        "thresholds.tsv)"
        for _, row in failing.iterrows()
    )
    raise UserInputError(
        f"{said}: fewer than qc.min_cells_per_sample={min_cells}. Check the data and thresholds; "
        "to go on, set that sample's `on_small_sample` column in the sample sheet to `drop` "
        "(leave it out) or `keep` (use its few cells): only its QC job reruns"
    )


# --------------------------------------------------------------------------------------------
# Format: the per-cell table, the thresholds table, the summary row
# --------------------------------------------------------------------------------------------
def _cells_table(adata: ad.AnnData, calls: _Calls, *, sample: str) -> pd.DataFrame:
    """Every cell: sample, barcode, metrics, doublet score and call, passed_qc, qc_reasons."""
    reasons = calls.flags.apply(lambda r: ";".join(c for c in REASONS if r[c]), axis=1)
    cells = adata.obs[["barcode"] if "barcode" in adata.obs else []].copy()
    cells.insert(0, "sample", sample)
    cells = cells.join(adata.obs[list(CELL_COLUMNS)])
    cells["passed_qc"] = calls.keep
    cells["qc_reasons"] = reasons.where(~calls.keep, "")
    cells.index.name = "cell"
    return cells


def _thresholds_table(calls: _Calls, *, sample: str, params: QCParams) -> pd.DataFrame:
    """One row per applied threshold, then the doublet score's cut."""
    exempt = params.hb_rich_min_pct_hb
    outcome = _hb_rich_outcome(calls.hb_rich, calls.flags, calls.keep)
    rows = []
    for t in calls.thresholds:
        row = asdict(t)
        row["sample"] = sample
        if t.metric == "pct_counts_in_top_20_genes" and exempt is not None:
            row["detail"] += f"; cells with pct_counts_hb > {exempt:g} exempt"
        if t.metric == COUNTS_EXCLUDING_HB:
            row["detail"] += (
                f"; {outcome['hb_rich_cells']} hb-rich cells, {outcome['hb_rich_kept']} kept, "
                f"{outcome['hb_rich_removed_high_counts']} removed as high_counts"
            )
        rows.append(row)
    method = params.doublets.method
    rows.append(
        {
            "sample": sample,
            "metric": "doublet_score",
            "lower": None,
            "upper": calls.doublet_cut,
            "source": method if params.doublets.remove else f"{method} (reported, not removed)",
            "detail": calls.doublet_note,
        }
    )
    return pd.DataFrame(rows)[list(THRESHOLD_COLUMNS)]


def _summary_row(adata: ad.AnnData, calls: _Calls, *, sample: str) -> dict[str, Any]:
    """The sample's row of qc_summary: cells in, removed per reason, out, bounds used."""
    keep, flags = calls.keep, calls.flags
    summary: dict[str, Any] = {"sample": sample, "cells_in": adata.n_obs}
    for reason in REASONS:
        summary[f"removed_{reason}"] = int(flags[reason].sum())
    summary["removed_total"] = int((~keep).sum())
    summary["cells_out"] = int(keep.sum())
    summary["predicted_doublets"] = int(adata.obs["predicted_doublet"].sum())
    summary.update(_hb_rich_outcome(calls.hb_rich, flags, keep))
    for t in calls.thresholds:
        summary[f"{t.metric}_lower"] = t.lower
        summary[f"{t.metric}_upper"] = t.upper
    summary["doublet_threshold"] = calls.doublet_cut
    summary["dropped_sample"] = calls.dropped
    summary["small_sample"] = calls.small_sample
    return summary
