"""Flags on DE genes and gene-set scores whose signal another cell type (spillover, doublets) or ambient RNA can explain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    # donors x features (gene sets): the features' summed counts per million of the same totals
    feature_cpm: np.ndarray | None = None


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
    flag, source = _flag(
        target, sources, lfc, np.asarray(is_condition, dtype=bool), column=column,
        max_fraction=max_fraction, min_explained=min_explained,
    )  # fmt: skip
    return _frame(genes, flag, source)


def set_contamination_flags(
    pseudobulk: ad.AnnData,
    sets: Mapping[str, Sequence[str]],
    differences: Mapping[str, float],
    *,
    cell_type: str,
    donors: Sequence[str],
    is_condition: np.ndarray,
    cell_type_key: str,
    replicate_key: str,
    max_fraction: float,
    min_explained: float,
) -> pd.DataFrame:
    """Per gene set: can another cell type or the ambient RNA explain its level and change?

    The three criteria of :func:`contamination_flags` applied to the set's summed counts per
    donor, as if the set were one gene: (1) T holds at most ``max_fraction`` of the source's
    CPM of the set, (2) the source's contamination (each donor's weight estimated from the
    source's gene-level markers, as for genes) explains at least ``min_explained`` of T's CPM
    of the set, (3) the contamination's fold change has the sign of the set's score
    difference. A score averages log-expression over the set's genes, so the summed counts
    weight each gene by its abundance: a set whose score moves with a few leaked, abundant
    transcripts (ambient globins in a T cell) is flagged; a set the cell type expresses itself
    is not (criterion 1).

    Parameters
    ----------
    sets
        Set name -> the genes it was scored on; genes absent from `pseudobulk` are left out.
    differences
        Set name -> the score difference, condition - reference (its sign is the direction).

    Returns
    -------
    DataFrame
        ``signature``, ``contamination_flag``, ``contamination_source``, one row per set in
        `sets` order; a set with no gene in `pseudobulk` or no difference is not flagged.
    """
    names = [str(n) for n in sets]
    flag = np.zeros(len(names), dtype=bool)
    source = np.full(len(names), "", dtype=object)
    genes = pd.Index(pseudobulk.var_names.astype(str))
    membership = np.zeros((genes.size, len(names)))
    for j, name in enumerate(names):
        index = genes.get_indexer([str(g) for g in sets[name]])
        membership[index[index >= 0], j] = 1.0
    if names and cell_type in set(pseudobulk.obs[cell_type_key].astype(str)):
        target, sources = _profiles(
            pseudobulk, cell_type=cell_type, donors=donors, cell_type_key=cell_type_key,
            replicate_key=replicate_key, membership=membership,
        )  # fmt: skip
        direction = np.array([differences.get(n, np.nan) for n in names], dtype=float)
        direction[membership.sum(axis=0) == 0] = np.nan
        flag, source = _flag(
            target, sources, direction, np.asarray(is_condition, dtype=bool), column=None,
            max_fraction=max_fraction, min_explained=min_explained,
        )  # fmt: skip
    return pd.DataFrame(
        {"signature": names, CONTAMINATION_FLAG: flag.astype(bool), CONTAMINATION_SOURCE: source}
    )


def _flag(
    target: _Source,
    sources: Sequence[_Source],
    lfc: np.ndarray,
    is_condition: np.ndarray,
    *,
    column: np.ndarray | None,
    max_fraction: float,
    min_explained: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The three criteria over every source: flag and the source explaining the largest share.

    `column` picks the tested genes among the profiles' genes; None tests the features.
    """
    flag = np.zeros(lfc.size, dtype=bool)
    source = np.full(lfc.size, "", dtype=object)
    best = np.zeros(lfc.size)
    for candidate in sources:
        weight = _weights(target.cpm, candidate, max_fraction=max_fraction)
        if column is None:
            columns = (target.feature_cpm, candidate.feature_cpm)
        else:
            columns = (target.cpm[:, column], candidate.cpm[:, column])
        marker, explained, predicted = _expected_contribution(
            *columns, candidate.present, weight, is_condition, max_fraction=max_fraction
        )
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
    return flag, source


def _frame(genes: np.ndarray, flag: np.ndarray, source: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"gene": genes, CONTAMINATION_FLAG: flag.astype(bool), CONTAMINATION_SOURCE: source}
    )


def _cpm(counts: np.ndarray) -> np.ndarray:
    """Counts per million per row; rows without counts stay zero."""
    return _cpm_of(counts, counts.sum(axis=1, keepdims=True))


def _cpm_of(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Counts per million of the given row totals; rows without counts stay zero."""
    out = np.zeros_like(counts, dtype=float)
    return np.divide(counts * 1e6, totals, out=out, where=totals > 0)


def _profiles(
    pseudobulk: ad.AnnData,
    *,
    cell_type: str,
    donors: Sequence[str],
    cell_type_key: str,
    replicate_key: str,
    membership: np.ndarray | None = None,
) -> tuple[_Source, list[_Source]]:
    """T's profile (T's donors x all genes) and every source's in the same donors.

    With `membership` (genes x features, 0/1) each profile also holds the features' summed
    counts per million, over the same per-donor totals as the genes.
    """
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

    def profile(name: str, block: np.ndarray) -> _Source:
        features = None
        if membership is not None:
            features = _cpm_of(block @ membership, block.sum(axis=1, keepdims=True))
        return _Source(name, _cpm(block), block.sum(axis=1) > 0, features)

    target = profile(cell_type, by_type[cell_type])
    sources = [
        profile(name, block)
        for name, block in by_type.items()
        if name != cell_type and (block.sum(axis=1) > 0).any()
    ]
    sources.append(profile(AMBIENT, total))
    return target, sources


def _weights(target: np.ndarray, candidate: _Source, *, max_fraction: float) -> np.ndarray:
    """Each donor's contamination weight from the source (SoupX's estimate on its markers).

    The source's markers are the genes T holds at <= max_fraction of the source's level; the
    weight is the sum of T's CPM of them over the sum of the source's CPM. Donors without the
    source get weight zero.
    """
    source_pooled = candidate.cpm[candidate.present].mean(axis=0)
    markers = (target.mean(axis=0) <= max_fraction * source_pooled) & (source_pooled > 0)
    weight = np.zeros(target.shape[0])
    if markers.any():
        held = candidate.cpm[:, markers].sum(axis=1)
        weight = np.divide(
            target[:, markers].sum(axis=1), held, out=np.zeros_like(held), where=held > 0
        )
    return weight


def _expected_contribution(
    target: np.ndarray,
    source: np.ndarray,
    present: np.ndarray,
    weight: np.ndarray,
    is_condition: np.ndarray,
    *,
    max_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column (gene or set): a source marker against T?, the share explained, the log2FC.

    `target` and `source` are donors x columns CPM; returned per column: whether T holds at
    most max_fraction of the source's pooled level, the share of T's pooled CPM the source's
    expected contribution (weight x source CPM) explains, and that contribution's log2 fold
    change between the groups.
    """
    source_pooled = source[present].mean(axis=0)
    pooled = target.mean(axis=0)
    markers = (pooled <= max_fraction * source_pooled) & (source_pooled > 0)
    contribution = weight[:, None] * source
    explained = np.divide(
        contribution.mean(axis=0), pooled, out=np.zeros_like(pooled), where=pooled > 0
    )
    floor = 1e-3  # CPM: keeps genes absent from one group's contribution finite
    predicted = np.log2(
        (contribution[is_condition].mean(axis=0) + floor)
        / (contribution[~is_condition].mean(axis=0) + floor)
    )
    return markers, explained, predicted
