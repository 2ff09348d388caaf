"""Rank-based gene-set enrichment of one cell type's differential-expression result."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cordatlas.checks import require_columns
from cordatlas.compare.donor_stats import bh_adjust
from cordatlas.errors import UserInputError
from cordatlas.params import EnrichmentParams
from cordatlas.vocabulary import EVIDENCE, NOT_TESTABLE, NOTE, check_evidence

log = logging.getLogger(__name__)

#: Columns of :func:`rank_enrichment`'s result.
ENRICHMENT_COLUMNS = [
    "cell_type",
    "gene_set",
    "n_genes",
    "n_missing",
    "auc",
    "direction",
    "pvalue",
    "padj",
    "leading_genes",
    "method",
    EVIDENCE,
    NOTE,
]

#: Value of the ``method`` column.
METHOD = "wilcoxon_rank_sum_competitive"


def rank_enrichment(
    de: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    enrichment: EnrichmentParams,
    *,
    rank_by: str = "stat",
    n_leading: int = 10,
) -> pd.DataFrame:
    """Competitive rank test of each gene set in one cell type's differential-expression ranking.

    Every gene with a finite `rank_by` statistic (DESeq2's Wald statistic, or a z score) is
    ranked; for each set, the statistics of its genes are compared with those of all other
    ranked genes by a two-sided Wilcoxon rank-sum (Mann-Whitney) test with the normal
    approximation and tie correction. This is limma's ``geneSetTest``/``wilcoxGST`` with ranks
    only (Ritchie et al. 2015, Nucleic Acids Res 43:e47): it asks whether the set's genes rank
    higher or lower than the other genes, not whether any gene changes. The effect size is the
    area under the curve, ``auc`` = P(statistic of a set gene > that of another gene), ties
    counting one half; 0.5 means no shift.

    Limits. The test treats genes as independent. Genes of a set are usually co-expressed, so
    their statistics are positively correlated and the p-values are too small (the variance
    inflation CAMERA corrects, Wu & Smyth 2012, Nucleic Acids Res 40:e133); read them as a
    ranking of sets, not as calibrated error rates. The statistic already has donors as the
    unit when it comes from a pseudobulk test; ``evidence`` carries over the DE table's own
    label (an exploratory cell-level result stays exploratory).

    Parameters
    ----------
    de
        One cell type's DE table: ``gene``, `rank_by`, ``evidence`` (one label), optionally
        ``cell_type`` (one value). Genes whose statistic is NaN (untested, filtered) are not
        ranked.
    gene_sets
        Set name -> gene symbols. Matching is exact and case-sensitive; duplicate symbols count
        once; symbols absent from the ranking count in ``n_missing``.
    enrichment
        config ``enrichment``: sets with fewer than ``min_set_size`` or more than
        ``max_set_size`` ranked genes are reported with NaN statistics and a ``note``.
    rank_by
        Column of `de` ranked (signed: positive = higher in the condition).
    n_leading
        Set genes listed in ``leading_genes``: the most extreme in the set's direction.

    Returns
    -------
    DataFrame
        :data:`ENRICHMENT_COLUMNS`, one row per set in the order given. ``direction`` is
        ``up`` (auc > 0.5) or ``down``; ``padj`` is Benjamini-Hochberg over the tested sets of
        this cell type; ``evidence`` is the DE table's label (``not_testable`` when it has no
        row); ``note`` is empty for tested sets and says why otherwise.

    Raises
    ------
    UserInputError
        Missing columns, several cell types or evidence labels, duplicated genes, or
        inconsistent size limits.
    """
    cell_type, evidence = _check_de_table(de, enrichment, rank_by=rank_by)
    statistic = pd.to_numeric(de[rank_by], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(statistic)
    ranked = pd.Series(statistic[finite], index=de["gene"].astype(str).to_numpy()[finite])
    rows = []
    for name, members in gene_sets.items():
        row = _test_set(ranked, members, enrichment, n_leading=n_leading)
        rows.append({"cell_type": cell_type, "gene_set": str(name), EVIDENCE: evidence, **row})
    out = pd.DataFrame(rows, columns=ENRICHMENT_COLUMNS)
    out["padj"] = bh_adjust(out["pvalue"])
    check_evidence(out[EVIDENCE], table="enrichment")
    log.info(
        "enrichment of %s (%d ranked genes by %s): %d of %d sets tested",
        cell_type or "DE table",
        ranked.size,
        rank_by,
        int(out["pvalue"].notna().sum()),
        len(out),
    )
    return out


def _check_de_table(
    de: pd.DataFrame, enrichment: EnrichmentParams, *, rank_by: str
) -> tuple[str, str]:
    """The DE table's one cell type ("" if unnamed) and one evidence label; limits checked."""
    require_columns(
        de.columns,
        ["gene", rank_by, EVIDENCE],
        table="DE table",
        fix=f"available: {sorted(map(str, de.columns))}; set the enrichment rank_by to a "
        "statistic column of a DE table written by the DE rules.",
    )
    min_size, max_size = enrichment.min_set_size, enrichment.max_set_size
    if min_size < 1 or max_size < min_size:
        raise UserInputError(
            f"gene-set size limits min_size={min_size}, max_size={max_size} must satisfy "
            "1 <= min_size <= max_size; fix enrichment.min_set_size and max_set_size in the "
            "config."
        )
    cell_type = ""
    if "cell_type" in de.columns:
        types = de["cell_type"].dropna().astype(str).unique()
        if len(types) > 1:
            raise UserInputError(
                f"DE table holds several cell types ({', '.join(sorted(types)[:5])}); pass one "
                "cell type's table at a time."
            )
        cell_type = str(types[0]) if len(types) else ""
    labels = list(dict.fromkeys(de[EVIDENCE].dropna().astype(str)))
    if len(labels) > 1:
        raise UserInputError(
            f"the DE table of cell type {cell_type!r} mixes evidence labels {labels}; one "
            "cell type's results come from one test, so rank one table at a time."
        )
    check_evidence(labels, table=f"DE table of cell type {cell_type!r}")
    genes = de["gene"].astype(str)
    duplicated = genes[genes.duplicated()].unique()
    if len(duplicated):
        raise UserInputError(
            f"gene {duplicated[0]!r} appears more than once in the DE table of cell type "
            f"{cell_type!r} ({len(duplicated)} such genes); one row per gene is needed."
        )
    return cell_type, labels[0] if labels else NOT_TESTABLE


def _test_set(
    ranked: pd.Series,
    members: Sequence[str],
    enrichment: EnrichmentParams,
    *,
    n_leading: int,
) -> dict[str, object]:
    """One set's row: sizes, and the rank-sum test where its size is within the limits."""
    values = ranked.to_numpy()
    unique = list(dict.fromkeys(str(g) for g in members))
    where = ranked.index.get_indexer(unique)
    inside = where[where >= 0]
    n_genes, n_outside = int(inside.size), int(values.size - inside.size)
    row: dict[str, object] = {
        "n_genes": n_genes,
        "n_missing": len(unique) - n_genes,
        "auc": np.nan,
        "direction": "",
        "pvalue": np.nan,
        "padj": np.nan,
        "leading_genes": "",
        "method": METHOD,
        NOTE: "",
    }
    if n_genes < enrichment.min_set_size:
        row[NOTE] = (
            f"fewer than min_size={enrichment.min_set_size} genes in the ranking ({n_genes})"
        )
    elif n_genes > enrichment.max_set_size:
        row[NOTE] = f"more than max_size={enrichment.max_set_size} genes in the ranking ({n_genes})"
    elif n_outside == 0:
        row[NOTE] = "no ranked genes outside the set to compare with"
    else:
        in_set = np.zeros(values.size, dtype=bool)
        in_set[inside] = True
        test = stats.mannwhitneyu(
            values[in_set], values[~in_set], alternative="two-sided", method="asymptotic"
        )
        auc = float(test.statistic) / (n_genes * n_outside)
        up = auc > 0.5
        order = np.argsort(values[inside], kind="stable")
        if up:
            order = order[::-1]
        row.update(
            auc=auc,
            direction="up" if up else "down",
            pvalue=float(test.pvalue),
            leading_genes=",".join(ranked.index[inside[order[:n_leading]]]),
        )
    return row


def rank_enrichment_by_cell_type(
    de: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    enrichment: EnrichmentParams,
    *,
    rank_by: str = "stat",
    n_leading: int = 10,
) -> pd.DataFrame:
    """:func:`rank_enrichment` for each cell type of a combined DE table, results stacked.

    Parameters
    ----------
    de
        DE tables of several cell types in one (column ``cell_type``), e.g. ``de_all.tsv.gz``.
    gene_sets, enrichment, rank_by, n_leading
        As in :func:`rank_enrichment`; BH stays within each cell type.

    Returns
    -------
    DataFrame
        :data:`ENRICHMENT_COLUMNS`, cell types in order of first appearance; empty (with the
        columns) when `de` or `gene_sets` is empty.
    """
    require_columns(
        de.columns,
        ["cell_type"],
        table="DE table",
        fix=f"available: {sorted(map(str, de.columns))}; pass the combined per-cell-type DE table.",
    )
    tables = [
        rank_enrichment(table, gene_sets, enrichment, rank_by=rank_by, n_leading=n_leading)
        for _, table in de.groupby(de["cell_type"].astype(str), sort=False)
    ]
    tables = [t for t in tables if not t.empty]
    if not tables:
        return pd.DataFrame(columns=ENRICHMENT_COLUMNS)
    return pd.concat(tables, ignore_index=True)
