"""Per-cell gene-set scores (scanpy's score_genes), shared by the marker panel and the signature library.

:func:`score_gene_sets` computes what ``sc.tl.score_genes`` computes, set by set, with the same
seeded control-gene draw, but in one pass over the expression matrix for all sets: scanpy's
function recomputes every gene's mean and copies a column slice of the whole matrix for each
set, which took 19 of annotate_cells' 31 s on the 25k benchmark study (27 sets).
tests/unit/test_scoring.py checks the scores against ``sc.tl.score_genes``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.atlas.genes import measured_in_all
from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)


def check_log_normalised(adata: ad.AnnData) -> None:
    """Refuse raw counts in X: scores are defined on log-normalised expression."""
    block = adata.X[: min(adata.n_obs, 500)]
    values = block.data if sp.issparse(block) else np.asarray(block).ravel()
    if values.size and np.all(np.mod(values, 1) == 0) and values.max() > 30:
        raise UserInputError(
            "adata.X holds integer counts (max "
            f"{values.max():.0f}); marker scores need log-normalised expression in X: run the "
            "normalise step (cordatlas.atlas.build.normalise) first"
        )


def symbol_index(adata: ad.AnnData, gene_symbols: str | None) -> pd.Index:
    """Gene symbols of `adata`'s genes (var_names, or a var column), made unique."""
    if gene_symbols is None:
        symbols = adata.var_names.astype(str)
    else:
        if gene_symbols not in adata.var:
            raise UserInputError(
                f"gene_symbols={gene_symbols!r} is not a var column; use one of "
                f"{sorted(adata.var.columns)} or None (gene symbols in var_names)"
            )
        symbols = pd.Index(adata.var[gene_symbols].astype(str))
    return pd.Index(ad.utils.make_index_unique(pd.Index(symbols)))


@dataclass(frozen=True)
class GeneSetScores:
    """What :func:`score_gene_sets` computed."""

    scores: pd.DataFrame  # cells x scored sets (input order), float64
    used: dict[str, list[str]]  # per set: its genes found in the data
    missing: dict[str, list[str]]  # per set: its genes not in the data (or not measured everywhere)
    symbols: pd.Index  # the data's gene symbols
    # per set: its genes in the data but not measured in every sample (also in `missing`)
    unmeasured: dict[str, list[str]] = field(default_factory=dict)


def score_gene_sets(
    adata: ad.AnnData,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    min_genes: Mapping[str, int],
    seed: int = 0,
    ctrl_size: int = 50,
    n_bins: int = 25,
    gene_symbols: str | None = None,
) -> GeneSetScores:
    """Score every cell for every set with at least ``min_genes[name]`` of its genes in the data.

    A cell's score is the mean log-normalised expression of the set's genes minus the mean of
    control genes drawn at random from the same expression bins (Satija et al. 2015; scanpy's
    `score_genes`); the draw is seeded, so scores are reproducible. Sets with too few genes
    present are left out of `scores` (their genes are still listed in `used` and `missing`).

    Genes some sample of `adata` did not measure (zero-filled by the outer join,
    :func:`cordatlas.atlas.genes.measured_in_all`) count as absent: they are dropped from the
    sets (listed in `missing` and `unmeasured`, and logged) and never drawn as control genes.
    Scoring a one-sample subset uses all of that sample's genes.
    """
    check_log_normalised(adata)
    symbols = symbol_index(adata, gene_symbols)
    measured = measured_in_all(adata)
    present = set(symbols[measured])
    not_measured = set(symbols[~measured])
    used: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    unmeasured: dict[str, list[str]] = {}
    scored: list[str] = []
    for name, genes in gene_sets.items():
        used[name] = [g for g in genes if g in present]
        missing[name] = [g for g in genes if g not in present]
        unmeasured[name] = [g for g in genes if g in not_measured]
        if unmeasured[name]:
            log.info(
                "gene set %s: %d genes not measured in every sample are left out: %s",
                name,
                len(unmeasured[name]),
                ", ".join(unmeasured[name]),
            )
        if adata.n_obs > 0 and len(used[name]) >= min_genes[name]:
            scored.append(name)
    values = np.empty((adata.n_obs, 0))
    if scored:
        bins = expression_bins(adata.X, symbols, measured, n_bins=n_bins)
        weights = np.zeros((adata.n_vars, len(scored)))
        position = pd.Series(np.arange(adata.n_vars), index=symbols)
        for j, name in enumerate(scored):
            genes = pd.Index(used[name]).unique()
            control = control_genes(bins, genes, ctrl_size=ctrl_size, seed=seed)
            weights[position[genes].to_numpy(), j] = 1.0 / len(genes)
            weights[position[control].to_numpy(), j] = -1.0 / len(control)
        values = weighted_row_sums(adata.X, weights)
    scores = pd.DataFrame(values, index=adata.obs_names.copy(), columns=scored)
    return GeneSetScores(
        scores=scores, used=used, missing=missing, symbols=symbols, unmeasured=unmeasured
    )


def expression_bins(X, symbols: pd.Index, measured: np.ndarray, *, n_bins: int = 25) -> pd.Series:
    """Expression bin of every measured gene, as ``sc.tl.score_genes`` cuts the gene pool.

    Genes are ranked by their mean over all cells (float64 for sparse X, as scanpy) and cut
    into bins of ``round(n_genes / (n_bins - 1))`` genes; indexed by symbol, in var order.
    """
    if sp.issparse(X):
        means = np.asarray(X.sum(axis=0, dtype=np.float64)).ravel() / X.shape[0]
    else:
        means = np.nanmean(np.asarray(X), axis=0)
    pool = pd.Series(means[measured], index=symbols[measured].astype("string"))
    pool = pool[np.isfinite(pool)]
    n_items = int(np.round(len(pool) / (n_bins - 1)))
    return pool.rank(method="min") // n_items


def control_genes(bins: pd.Series, genes: pd.Index, *, ctrl_size: int, seed: int) -> pd.Index:
    """The control genes ``sc.tl.score_genes(random_state=seed)`` draws for `genes`.

    For each bin holding one of `genes`, `ctrl_size` genes drawn at random from the bin (all
    of them when it has fewer), less `genes` themselves (scanpy's ``ctrl_as_ref=True``). The
    draw uses its own generator seeded with `seed`, which gives the draws of scanpy's seeded
    global one.
    """
    random = np.random.RandomState(seed)
    control = pd.Index([], dtype="string")
    for cut in np.unique(bins.loc[genes]):
        candidates = bins[bins == cut].index
        if ctrl_size < len(candidates):
            candidates = candidates.to_series().sample(ctrl_size, random_state=random).index
        control = control.union(candidates.difference(genes))
    if len(control) == 0:
        raise UserInputError(
            f"no control genes for the gene set {list(genes)}: the data has too few genes "
            f"({len(bins)}) to draw expression-matched controls from"
        )
    return control


def weighted_row_sums(X, weights: np.ndarray, *, chunk: int = 20_000) -> np.ndarray:
    """``X @ weights`` in float64, `chunk` cells at a time (a float64 copy of X never exists)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    if np.isnan(X.data if sp.issparse(X) else np.asarray(X)).any():
        raise UserInputError(
            "adata.X holds NaN values; gene-set scores need finite log-normalised expression: "
            "rerun the normalise step on counts without missing values"
        )
    out = np.empty((X.shape[0], weights.shape[1]))
    for start in range(0, X.shape[0], chunk):
        block = X[start : start + chunk]
        block = block.astype(np.float64) if sp.issparse(block) else np.asarray(block, np.float64)
        out[start : start + chunk] = block @ weights
    return out
