"""Flags on DE genes whose signal another cell type (spillover, doublets) or ambient RNA can explain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

#: contamination_source of a gene explained by the ambient RNA (the sample's overall profile).
AMBIENT = "ambient"
CONTAMINATION_FLAG = "contamination_flag"
CONTAMINATION_SOURCE = "contamination_source"


@dataclass(frozen=True)
class _Source:
    """One possible source of a tested cell type's contamination: its profile per donor."""

    name: str
    cpm: np.ndarray  # donors x genes, counts per million of the source's pseudobulk (0 if none)
    present: np.ndarray  # donors: the source has counts in that donor


def contamination_flags(
    pseudobulk: ad.AnnData,
    results: pd.DataFrame,
    *,
    cell_type: str,
    donors: Sequence[str],
    is_condition: np.ndarray,
    cell_type_key: str,
    replicate_key: str,
    max_fraction: float,
    min_explained: float,
) -> pd.DataFrame:
    """Per tested gene: can another cell type or the ambient RNA explain its level and change?

    The rule, for a tested cell type T and each source Q (every other cell type's pseudobulk
    of the same donors, and ``ambient``: the donor's summed counts over all cell types, the
    sample's overall profile; SoupX (Young & Behjati 2020, GigaScience 9:giaa151) estimates the
    soup from empty droplets, which filtered data no longer hold, and ambient RNA comes from the
    sample's own cells, so the overall profile stands in for it):

    1. Marker: T's pooled expression (CPM over T's donors) is at most ``max_fraction`` of Q's
       pooled expression over the same donors. Such genes of Q are Q's markers against T.
    2. Share: each donor's contamination weight w_d from Q is estimated as SoupX estimates its
       contamination fraction from genes the cells do not express: the CPM that Q's markers
       hold in T's pseudobulk over the CPM they hold in Q's profile. Q's expected contribution
       to T in donor d is w_d x Q's CPM; it must explain at least ``min_explained`` of T's
       pooled CPM of the gene.
    3. Direction: the expected contribution's log2 fold change between the groups (group means
       of the contributions, so it carries the source's abundance difference, the ambient
       fraction's and the source's own change) has the sign of the DE log2FC.

    A gene meeting all three for some source is flagged; the source named is the one that
    explains the largest share. Genes with no DE log2FC are not flagged.

    Parameters
    ----------
    pseudobulk
        All cell types' pseudobulks (raw counts), obs with `cell_type_key`, `replicate_key`.
    results
        The cell type's DE table: ``gene`` and ``log2FC``.
    cell_type
        The tested cell type.
    donors, is_condition
        T's replicates used by the test (replicate ids in pseudobulk order) and which are the
        contrast's condition.
    max_fraction, min_explained
        config ``comparison.contamination_max_fraction`` and
        ``comparison.contamination_min_explained``.

    Returns
    -------
    DataFrame
        ``gene``, ``contamination_flag`` (bool), ``contamination_source`` (cell type,
        ``ambient`` or ""), in `results`' row order.
    """
    genes = results["gene"].astype(str).to_numpy()
    flag = np.zeros(genes.size, dtype=bool)
    source = np.full(genes.size, "", dtype=object)
    if genes.size == 0:
        return _frame(genes, flag, source)
    target, sources = _profiles(
        pseudobulk, cell_type=cell_type, donors=donors,
        cell_type_key=cell_type_key, replicate_key=replicate_key,
    )  # fmt: skip
    column = pd.Index(pseudobulk.var_names.astype(str)).get_indexer(genes)
    lfc = pd.to_numeric(results["log2FC"], errors="coerce").to_numpy(dtype=float)
    best = np.zeros(genes.size)
    for candidate in sources:
        marker, explained, predicted = _expected_contribution(
            target, candidate, np.asarray(is_condition, dtype=bool), max_fraction=max_fraction
        )
        marker, explained, predicted = marker[column], explained[column], predicted[column]
        ok = (
            marker
            & (explained >= min_explained)
            & (np.sign(predicted) == np.sign(lfc))
            & (lfc != 0)
            & np.isfinite(lfc)
            & (explained > best)
        )
        flag |= ok
        source[ok] = candidate.name
        best[ok] = explained[ok]
    return _frame(genes, flag, source)


def _frame(genes: np.ndarray, flag: np.ndarray, source: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"gene": genes, CONTAMINATION_FLAG: flag.astype(bool), CONTAMINATION_SOURCE: source}
    )


def _cpm(counts: np.ndarray) -> np.ndarray:
    """Counts per million per row; rows without counts stay zero."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts * 1e6, totals, out=np.zeros_like(counts), where=totals > 0)


def _profiles(
    pseudobulk: ad.AnnData,
    *,
    cell_type: str,
    donors: Sequence[str],
    cell_type_key: str,
    replicate_key: str,
) -> tuple[np.ndarray, list[_Source]]:
    """T's CPM (T's donors x all genes) and every source's in the same donors."""
    obs = pseudobulk.obs
    types = obs[cell_type_key].astype(str).to_numpy()
    reps = obs[replicate_key].astype(str).to_numpy()
    counts = pseudobulk.X.toarray() if sp.issparse(pseudobulk.X) else np.asarray(pseudobulk.X)
    counts = counts.astype(float)
    donors = [str(d) for d in donors]
    by_type: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(types):
        block = np.zeros((len(donors), counts.shape[1]))
        for i, donor in enumerate(donors):
            rows = np.flatnonzero((types == name) & (reps == donor))
            if rows.size:
                block[i] = counts[rows].sum(axis=0)
        by_type[name] = block
    total = sum(by_type.values())
    target = _cpm(by_type[cell_type])
    sources = [
        _Source(name, _cpm(block), block.sum(axis=1) > 0)
        for name, block in by_type.items()
        if name != cell_type and (block.sum(axis=1) > 0).any()
    ]
    sources.append(_Source(AMBIENT, _cpm(total), total.sum(axis=1) > 0))
    return target, sources


def _expected_contribution(
    target: np.ndarray, candidate: _Source, is_condition: np.ndarray, *, max_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per gene: a source marker against T?, the share of T's CPM explained, the log2FC.

    Returned per gene (all genes): whether it is a marker of the source against T, the share
    of T's pooled CPM the source's expected contribution explains, and that contribution's
    log2 fold change between the groups.

    The donor's weight is SoupX's contamination-fraction estimate on the source's markers
    (genes T holds at <= max_fraction of the source's level): sum of T's CPM over the sum of
    the source's CPM. Donors without the source get weight zero.
    """
    source_pooled = candidate.cpm[candidate.present].mean(axis=0)
    markers = target.mean(axis=0) <= max_fraction * source_pooled
    markers &= source_pooled > 0
    weight = np.zeros(target.shape[0])
    if markers.any():
        held = candidate.cpm[:, markers].sum(axis=1)
        weight = np.divide(
            target[:, markers].sum(axis=1), held, out=np.zeros_like(held), where=held > 0
        )
    contribution = weight[:, None] * candidate.cpm
    pooled = target.mean(axis=0)
    explained = np.divide(
        contribution.mean(axis=0), pooled, out=np.zeros_like(pooled), where=pooled > 0
    )
    floor = 1e-3  # CPM: keeps genes absent from one group's contribution finite
    predicted = np.log2(
        (contribution[is_condition].mean(axis=0) + floor)
        / (contribution[~is_condition].mean(axis=0) + floor)
    )
    return markers, explained, predicted
