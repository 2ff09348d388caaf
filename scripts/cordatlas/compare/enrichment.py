"""Rank-based gene-set enrichment of one cell type's differential-expression result, and GMT reading."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cordatlas.compare.donor_stats import bh_adjust
from cordatlas.errors import UserInputError

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
    "evidence",
    "note",
]

#: Value of the ``method`` column.
METHOD = "wilcoxon_rank_sum_competitive"


def rank_enrichment(
    de: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    rank_by: str = "stat",
    min_size: int = 5,
    max_size: int = 500,
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
    label (e.g. an exploratory cell-level result stays exploratory).

    Parameters
    ----------
    de
        One cell type's DE table: ``gene``, `rank_by`, optionally ``cell_type`` (one value) and
        ``evidence``. Genes whose statistic is NaN (untested, filtered) are not ranked.
    gene_sets
        Set name -> gene symbols. Matching is exact and case-sensitive; duplicate symbols count
        once; symbols absent from the ranking count in ``n_missing``.
    rank_by
        Column of `de` ranked (signed: positive = higher in the condition).
    min_size, max_size
        Sets with fewer or more ranked genes are reported with NaN statistics and a ``note``.
    n_leading
        Set genes listed in ``leading_genes``: the most extreme in the set's direction.

    Returns
    -------
    DataFrame
        :data:`ENRICHMENT_COLUMNS`, one row per set in the order given. ``direction`` is
        ``up`` (auc > 0.5) or ``down``; ``padj`` is Benjamini-Hochberg over the tested sets of
        this cell type; ``note`` is empty for tested sets and says why otherwise.

    Raises
    ------
    UserInputError
        Missing columns, several cell types, duplicated genes, or inconsistent size limits.
    """
    missing = [c for c in ("gene", rank_by) if c not in de.columns]
    if missing:
        raise UserInputError(
            f"DE table lacks column(s) {missing} (available: {sorted(map(str, de.columns))}); "
            "set the enrichment rank_by to a statistic column of the DE table."
        )
    if min_size < 1 or max_size < min_size:
        raise UserInputError(
            f"gene-set size limits min_size={min_size}, max_size={max_size} must satisfy "
            "1 <= min_size <= max_size; fix them in the config."
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
    evidence = ""
    if "evidence" in de.columns:
        evidence = ";".join(dict.fromkeys(de["evidence"].dropna().astype(str)))

    genes = de["gene"].astype(str)
    duplicated = genes[genes.duplicated()].unique()
    if len(duplicated):
        raise UserInputError(
            f"gene {duplicated[0]!r} appears more than once in the DE table of cell type "
            f"{cell_type!r} ({len(duplicated)} such genes); one row per gene is needed."
        )
    statistic = pd.to_numeric(de[rank_by], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(statistic)
    ranked = pd.Series(statistic[finite], index=genes.to_numpy()[finite])
    values = ranked.to_numpy()
    position = pd.Index(ranked.index)

    rows = []
    for name, members in gene_sets.items():
        unique = list(dict.fromkeys(str(g) for g in members))
        where = position.get_indexer(unique)
        inside = where[where >= 0]
        n_genes, n_outside = int(inside.size), int(values.size - inside.size)
        row = {
            "cell_type": cell_type,
            "gene_set": str(name),
            "n_genes": n_genes,
            "n_missing": len(unique) - n_genes,
            "auc": np.nan,
            "direction": "",
            "pvalue": np.nan,
            "padj": np.nan,
            "leading_genes": "",
            "method": METHOD,
            "evidence": evidence,
            "note": "",
        }
        if n_genes < min_size:
            row["note"] = f"fewer than min_size={min_size} genes in the ranking ({n_genes})"
        elif n_genes > max_size:
            row["note"] = f"more than max_size={max_size} genes in the ranking ({n_genes})"
        elif n_outside == 0:
            row["note"] = "no ranked genes outside the set to compare with"
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
            leading = ranked.index[inside[order[:n_leading]]]
            row.update(
                auc=auc,
                direction="up" if up else "down",
                pvalue=float(test.pvalue),
                leading_genes=",".join(leading),
            )
        rows.append(row)
    out = pd.DataFrame(rows, columns=ENRICHMENT_COLUMNS)
    out["padj"] = bh_adjust(out["pvalue"])
    log.info(
        "enrichment of %s (%d ranked genes by %s): %d of %d sets tested",
        cell_type or "DE table",
        values.size,
        rank_by,
        int(out["pvalue"].notna().sum()),
        len(out),
    )
    return out


def rank_enrichment_by_cell_type(
    de: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    rank_by: str = "stat",
    min_size: int = 5,
    max_size: int = 500,
    n_leading: int = 10,
) -> pd.DataFrame:
    """:func:`rank_enrichment` for each cell type of a combined DE table, results stacked.

    Parameters
    ----------
    de
        DE tables of several cell types in one (column ``cell_type``), e.g. ``de_all.tsv.gz``.
    gene_sets, rank_by, min_size, max_size, n_leading
        As in :func:`rank_enrichment`; BH stays within each cell type.

    Returns
    -------
    DataFrame
        :data:`ENRICHMENT_COLUMNS`, cell types in order of first appearance; empty (with the
        columns) when `de` or `gene_sets` is empty.
    """
    if "cell_type" not in de.columns:
        raise UserInputError(
            f"DE table lacks column 'cell_type' (available: {sorted(map(str, de.columns))}); "
            "pass the combined per-cell-type DE table."
        )
    tables = [
        rank_enrichment(
            table,
            gene_sets,
            rank_by=rank_by,
            min_size=min_size,
            max_size=max_size,
            n_leading=n_leading,
        )
        for _, table in de.groupby(de["cell_type"].astype(str), sort=False)
    ]
    tables = [t for t in tables if not t.empty]
    if not tables:
        return pd.DataFrame(columns=ENRICHMENT_COLUMNS)
    return pd.concat(tables, ignore_index=True)
