"""Per-cell gene-set scores (scanpy's score_genes), shared by the marker panel and the signature library."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
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
    work = ad.AnnData(
        X=adata.X if measured.all() else adata.X[:, np.flatnonzero(measured)],
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        var=pd.DataFrame(index=symbols[measured]),
    )
    present = set(symbols[measured])
    not_measured = set(symbols[~measured])
    columns: dict[str, np.ndarray] = {}
    used: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    unmeasured: dict[str, list[str]] = {}
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
            sc.tl.score_genes(
                work,
                used[name],
                ctrl_size=ctrl_size,
                n_bins=n_bins,
                random_state=seed,
                score_name="_gene_set_score",
                use_raw=False,
            )
            columns[name] = work.obs["_gene_set_score"].to_numpy(dtype=np.float64)
    scores = pd.DataFrame(columns, index=adata.obs_names.copy())
    return GeneSetScores(
        scores=scores, used=used, missing=missing, symbols=symbols, unmeasured=unmeasured
    )
