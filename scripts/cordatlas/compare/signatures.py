"""Gene-signature scores per cell (the library's sets and potency), and their means per donor and cell type.

The library is :mod:`cordatlas.genesets.library`; the donor-level tests of these means are
:mod:`cordatlas.compare.signature_tests`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.checks import require_columns
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import POTENCY, library_sets
from cordatlas.genesets.scoring import score_gene_sets
from cordatlas.params import ComparisonParams

log = logging.getLogger(__name__)

#: Default minimum number of a set's genes found in the data for the set to be scored; a set
#: with fewer genes in total is scored when all of them are found.
DEFAULT_MIN_GENES = 3


# ============================================================================================
# Scoring cells
# ============================================================================================
def potency_score(
    adata: ad.AnnData,
    *,
    n_signature_genes: int = 200,
    counts_layer: str | None = "counts",
) -> pd.Series:
    """CytoTRACE-style developmental-potential score per cell, rank-scaled to [0, 1].

    Gulati et al. 2020 (Science 367:405) showed that the number of genes a cell expresses
    ("gene counts") falls with differentiation, and that the genes whose expression best tracks
    gene counts (the gene-counts signature) give a more robust score than gene counts alone.
    Here, as a simplified CytoTRACE (no kNN smoothing or regression step):

    1. gene counts = genes detected (count > 0) per cell, from raw counts;
    2. the `n_signature_genes` genes whose log-normalised expression (X) has the highest
       Pearson correlation with gene counts across all cells form the signature;
    3. score = mean log-normalised expression of the signature genes;
    4. the score is rank-scaled over all cells to [0, 1] (ties share their mean rank;
       1 = most potent, 0 = least).

    Limits: gene counts, and with them this score, also rise with sequencing depth, capture
    efficiency and cell size, so samples sequenced deeper or with another technology (10x v2
    vs v3) look "more potent", and so do doublets. Scores are ranks within the cells scored
    together: compare cell types within a study, not values across studies. Between-condition
    differences within a cell type should be read beside sample depth and technology (see the
    design findings; a condition aliased with technology cannot be separated from it). The score is no measure of functional stemness.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised expression in X.
    n_signature_genes
        Size of the gene-counts signature (CytoTRACE's default: 200); capped at the number of
        genes that vary.
    counts_layer
        Layer with raw counts for gene counts; when absent, genes detected are counted from X
        (log-normalisation keeps zeros at zero, so the count is the same).

    Returns
    -------
    pd.Series
        ``potency`` per cell (index obs_names); ``attrs["signature_genes"]`` lists the genes
        used and ``attrs["gene_counts"]`` holds the genes detected per cell.
    """
    if n_signature_genes < 1:
        raise UserInputError(f"n_signature_genes must be >= 1, got {n_signature_genes}")
    n_cells = adata.n_obs
    if n_cells == 0:
        return pd.Series([], index=adata.obs_names.copy(), name=POTENCY, dtype=np.float64)
    counts = (
        adata.layers[counts_layer]
        if counts_layer is not None and counts_layer in adata.layers
        else adata.X
    )
    if sp.issparse(counts):
        gene_counts = np.asarray((counts > 0).sum(axis=1)).ravel().astype(np.float64)
    else:
        gene_counts = (np.asarray(counts) > 0).sum(axis=1).astype(np.float64)
    x = adata.X
    # Pearson correlation per gene without densifying X: cov(x, g) / (sd_x sd_g)
    g_centred = gene_counts - gene_counts.mean()
    g_sd = float(np.sqrt((g_centred**2).mean()))
    if sp.issparse(x):
        mean_x = np.asarray(x.mean(axis=0)).ravel()
        mean_x2 = np.asarray(x.multiply(x).mean(axis=0)).ravel()
        cov = np.asarray(x.T @ g_centred).ravel() / n_cells
    else:
        dense = np.asarray(x, dtype=np.float64)
        mean_x = dense.mean(axis=0)
        mean_x2 = (dense**2).mean(axis=0)
        cov = dense.T @ g_centred / n_cells
    sd_x = np.sqrt(np.clip(mean_x2 - mean_x**2, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / (sd_x * g_sd)
    corr[~np.isfinite(corr) | (sd_x == 0)] = -np.inf
    usable = int(np.isfinite(corr).sum())
    if usable == 0 or g_sd == 0:
        log.warning("potency: gene counts or expression do not vary; every cell gets 0.5")
        series = pd.Series(0.5, index=adata.obs_names.copy(), name=POTENCY, dtype=np.float64)
        series.attrs["signature_genes"] = []
        series.attrs["gene_counts"] = gene_counts
        return series
    n_top = min(n_signature_genes, usable)
    top = np.argsort(-corr, kind="stable")[:n_top]
    block = x[:, top]
    raw = np.asarray(block.mean(axis=1)).ravel() if sp.issparse(block) else block.mean(axis=1)
    ranks = pd.Series(np.asarray(raw, dtype=np.float64)).rank(method="average").to_numpy()
    scaled = (ranks - 1.0) / (n_cells - 1.0) if n_cells > 1 else np.full(n_cells, 0.5)
    series = pd.Series(scaled, index=adata.obs_names.copy(), name=POTENCY, dtype=np.float64)
    series.attrs["signature_genes"] = [str(g) for g in adata.var_names[top]]
    series.attrs["gene_counts"] = gene_counts
    return series


def score_signatures(
    adata: ad.AnnData,
    library: Mapping[str, Any],
    *,
    seed: int = 0,
    min_genes: int = DEFAULT_MIN_GENES,
    ctrl_size: int = 50,
    n_bins: int = 25,
    gene_symbols: str | None = None,
    potency: bool = True,
    n_potency_genes: int = 200,
    counts_layer: str | None = "counts",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every cell for every gene set (scanpy's `score_genes`), plus potency.

    A cell's score for a set is the mean log-normalised expression of the set's genes minus
    the mean of control genes drawn at random from the same expression bins (Satija et al.
    2015; ``sc.tl.score_genes``), seeded, so scores are reproducible. Cell-cycle S and G2/M
    scores come from the library's ``cell_cycle_S`` and ``cell_cycle_G2M`` sets scored the same
    way. Genes absent from the data are dropped and listed.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised expression in X (raw counts in X are refused).
    library
        From `cordatlas.genesets.library.load_library` (or a bare ``{name: entry}`` mapping).
    seed
        random_state of the control-gene draw.
    min_genes
        A set is scored when at least this many of its genes are in the data, or, for a set
        with fewer genes in total, when all of them are (one- and two-gene sets such as
        BCL11A or HBG1/HBG2 are deliberate).
    ctrl_size, n_bins
        Control genes per bin and number of expression bins (scanpy's defaults: 50, 25).
    gene_symbols
        var column with gene symbols when var_names are not symbols.
    potency
        Add the ``potency`` column (`potency_score`).
    n_potency_genes, counts_layer
        Passed to `potency_score`.

    Returns
    -------
    scores
        Cells (adata.obs_names) x scored sets (library order), then ``potency``.
    report
        One row per set (and potency): ``signature``, ``category``, ``role``, ``n_genes``,
        ``n_found``, ``genes_used``, ``genes_missing`` (comma-separated), ``scored``,
        ``reason``.

    Raises
    ------
    UserInputError
        X holds raw counts, or no set could be scored.
    """
    sets = library_sets(library)
    # a set smaller than min_genes is scored when all its genes are present
    needed = {name: max(1, min(min_genes, len(e["genes"]))) for name, e in sets.items()}
    result = score_gene_sets(
        adata,
        {name: entry["genes"] for name, entry in sets.items()},
        min_genes=needed,
        seed=seed,
        ctrl_size=ctrl_size,
        n_bins=n_bins,
        gene_symbols=gene_symbols,
    )
    symbols = result.symbols
    columns: dict[str, np.ndarray] = {n: result.scores[n].to_numpy() for n in result.scores}
    rows = []
    for name, entry in sets.items():
        genes = entry["genes"]
        used, missing = result.used[name], result.missing[name]
        scored = name in columns
        reason = ""
        if not scored:
            reason = (
                f"only {len(used)} of {len(genes)} genes in the data (< {needed[name]})"
                if adata.n_obs > 0
                else "no cells"
            )
            log.warning("gene set %s not scored: %s (missing: %s)", name, reason, missing)
        rows.append(
            {
                "signature": name,
                "category": entry["category"],
                "role": entry["role"],
                "n_genes": len(genes),
                "n_found": len(used),
                "genes_used": ",".join(used),
                "genes_missing": ",".join(missing),
                "scored": bool(scored),
                "reason": reason,
            }
        )
    if not columns:
        raise UserInputError(
            f"no gene set has enough of its genes among the data's {adata.n_vars} genes (e.g. "
            f"{list(symbols[:3])}); check that genes are HGNC symbols, or pass gene_symbols= the "
            "var column that holds them"
        )
    if potency:
        series = potency_score(adata, n_signature_genes=n_potency_genes, counts_layer=counts_layer)
        columns[POTENCY] = series.to_numpy()
        genes_used = series.attrs.get("signature_genes", [])
        rows.append(
            {
                "signature": POTENCY,
                "category": "potency",
                "role": "biological",
                "n_genes": n_potency_genes,
                "n_found": len(genes_used),
                "genes_used": ",".join(genes_used),
                "genes_missing": "",
                "scored": True,
                "reason": "gene-counts signature (CytoTRACE-style), rank-scaled over all cells",
            }
        )
    scores = pd.DataFrame(columns, index=adata.obs_names.copy())
    return scores, pd.DataFrame(rows)


# ============================================================================================
# Per donor and cell type
# ============================================================================================
#: Columns of :func:`summarise_by_replicate`' result.
SUMMARY_COLUMNS = ["cell_type", "replicate", "condition", "signature", "n_cells", "mean_score"]


def read_replicate_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written from :func:`summarise_by_replicate` (ids stay text: donor "001")."""
    text = {c: str for c in ("cell_type", "replicate", "condition", "signature")}
    return pd.read_csv(path, sep="\t", dtype=text, keep_default_na=False)


def summarise_by_replicate(
    scores: pd.DataFrame,
    obs: pd.DataFrame,
    comparison: ComparisonParams,
    *,
    condition_key: str = "condition",
) -> pd.DataFrame:
    """Mean score per replicate (donor), cell type and signature: the unit of the test.

    Parameters
    ----------
    scores
        Cells x signatures (from `score_signatures`), index = cell ids in `obs`.
    obs
        Cell metadata with the config's ``cell_type_key`` and ``replicate_key`` and
        `condition_key`; each replicate must have one condition (checked with
        `donor_stats.replicate_table`).
    comparison
        config ``comparison``: the keys; ``min_cells_per_replicate`` (a replicate x cell type
        with fewer cells is left out: its mean would be too noisy to stand for the donor);
        ``exclude_cell_types`` (labels never summarised, e.g. unassigned clusters).

    Returns
    -------
    pd.DataFrame
        Long table with :data:`SUMMARY_COLUMNS`: ``replicate`` and ``condition`` hold the values
        of the replicate key and `condition_key`. Cell types in order of appearance in `obs`
        (categorical order when categorical), signatures in `scores` column order.
    """
    cell_type_key, replicate_key = comparison.cell_type_key, comparison.replicate_key
    min_cells = comparison.min_cells_per_replicate
    if min_cells < 1:
        raise UserInputError(f"min_cells must be >= 1, got {min_cells}")
    require_columns(
        obs.columns,
        [cell_type_key, replicate_key, condition_key],
        table="obs",
        fix=f"signature scores are summarised per {replicate_key} and cell type; available: "
        f"{sorted(map(str, obs.columns))}",
    )
    missing_cells = scores.index.difference(obs.index)
    if len(missing_cells):
        raise ValueError(
            f"{len(missing_cells)} scored cells are not in obs (e.g. {missing_cells[0]!r}); "
            "summarise the scores of the same AnnData"
        )
    if scores.empty or scores.shape[1] == 0:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    obs = obs.loc[scores.index]
    design = replicate_table(obs, replicate_key=replicate_key, condition_key=condition_key)
    cell_type = obs[cell_type_key].astype(str)
    replicate = obs[replicate_key].astype(str)
    keep = ~cell_type.isin(set(map(str, comparison.exclude_cell_types)))
    if isinstance(obs[cell_type_key].dtype, pd.CategoricalDtype):
        order = [str(c) for c in obs[cell_type_key].cat.categories]
    else:
        order = list(dict.fromkeys(cell_type))
    frame = scores.loc[keep.to_numpy()].copy()
    frame["_cell_type"] = cell_type[keep].to_numpy()
    frame["_replicate"] = replicate[keep].to_numpy()
    grouped = frame.groupby(["_cell_type", "_replicate"], sort=False, observed=True)
    means = grouped.mean()
    sizes = grouped.size()
    means = means.loc[sizes[sizes >= min_cells].index]
    if means.empty:
        log.warning("no replicate x cell type has %d or more cells", min_cells)
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    long = means.reset_index().melt(
        id_vars=["_cell_type", "_replicate"], var_name="signature", value_name="mean_score"
    )
    long = long.rename(columns={"_cell_type": "cell_type", "_replicate": "replicate"})
    long["n_cells"] = [
        int(sizes[(c, r)]) for c, r in zip(long["cell_type"], long["replicate"], strict=True)
    ]
    long["condition"] = design.loc[long["replicate"], condition_key].to_numpy()
    rank_type = {c: i for i, c in enumerate(order)}
    rank_sig = {s: i for i, s in enumerate(scores.columns)}
    long = long.sort_values(
        ["cell_type", "signature", "replicate"],
        key=lambda s: (
            s.map(rank_type)
            if s.name == "cell_type"
            else (s.map(rank_sig) if s.name == "signature" else s)
        ),
        kind="stable",
    )
    return long[SUMMARY_COLUMNS].reset_index(drop=True)
