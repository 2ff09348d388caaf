"""Gene-set enrichment of each cell type's differential expression: CAMERA on donor pseudobulks, a labelled ranking otherwise."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

from cordatlas.checks import require_columns
from cordatlas.compare.donor_stats import adjust_by_family, design_matrix, squeeze_var
from cordatlas.errors import UserInputError
from cordatlas.params import Contrast, EnrichmentParams
from cordatlas.vocabulary import EVIDENCE, LOW_POWER, NOT_TESTABLE, NOTE, check_evidence

log = logging.getLogger(__name__)

#: Columns of :func:`enrich_cell_type`'s result.
ENRICHMENT_COLUMNS = [
    "cell_type",
    "gene_set",
    "n_genes",
    "n_missing",
    "auc",
    "correlation",
    "statistic",
    "direction",
    "pvalue",
    "padj",
    "family",
    "padj_all",
    "leading_genes",
    "method",
    "n_condition",
    "n_reference",
    LOW_POWER,
    EVIDENCE,
    NOTE,
]

#: ``method`` of a donor-level (pseudobulk) cell type: CAMERA on its pseudobulks.
METHOD_CAMERA = "camera_pseudobulk"
#: ``method`` of a cell type without donor replication: a ranking, no test.
METHOD_RANKING = "rank_auc_no_test"
#: DE ``method`` whose tables come with donor pseudobulk counts (compare.plan).
PSEUDOBULK_DE_METHOD = "pseudobulk_deseq2"
#: ``note`` of a ranking-only row.
RANKING_NOTE = "ranking only: the DE statistics come from cells, not donors, so no p-value is given"


@dataclass(frozen=True)
class Pseudobulks:
    """One cell type's donor pseudobulks as the DE test used them."""

    counts: pd.DataFrame  # genes x pseudobulks, raw counts
    obs: pd.DataFrame  # pseudobulks x metadata (condition, covariates)


def log_cpm(counts: np.ndarray) -> np.ndarray:
    """voom's log2 counts per million, ``log2((count + 0.5) / (library + 1) * 1e6)`` (genes x samples).

    The library size is each sample's total over the genes given (Law et al. 2014, Genome Biol
    15:R29); the offsets keep zeros finite without favouring large libraries.
    """
    y = np.asarray(counts, dtype=float)
    library = y.sum(axis=0, keepdims=True)
    return np.log2((y + 0.5) / (library + 1.0) * 1e6)


def _t_to_z(t: np.ndarray, df: float) -> np.ndarray:
    """Normal quantiles with the same tail probability as t on `df` df (exact, in log space)."""
    if not np.isfinite(df):
        return np.asarray(t, dtype=float)
    log_tail = stats.t.logsf(np.abs(t), df)
    return -np.sign(t) * special.ndtri_exp(log_tail)


def camera(
    expression: np.ndarray,
    design: np.ndarray,
    sets: Mapping[str, np.ndarray],
    *,
    inter_gene_correlation: float | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """CAMERA competitive gene-set test (Wu & Smyth 2012, Nucleic Acids Res 40:e133), as limma's ``camera``.

    Each gene's log-expression is fitted by least squares on `design`; the coefficient tested is
    the design's LAST column. The genes' residual variances are moderated together
    (:func:`cordatlas.compare.donor_stats.squeeze_var`) and each gene's moderated t converted to
    a z score. A set's mean z is compared with the other genes' by a two-sample t whose variance
    is inflated by ``vif = 1 + (m - 1) rho``: rho is the mean correlation between the set's genes
    of the standardised residuals of the fit, i.e. of the donors' expression within groups, so
    genes that co-vary between donors (cell cycle, stress) no longer count as independent
    evidence. With an estimated rho the t has ``min(residual df, genes - 2)`` df (CAMERA's
    original rule); with a fixed `inter_gene_correlation` it has ``genes - 2`` (limma's preset
    mode). Negative correlations are not allowed to deflate the variance (vif >= 1, limma's
    default ``allow.neg.cor = FALSE``). One difference from limma: the t-to-z conversion is the
    exact quantile match rather than Hill's approximation.

    Parameters
    ----------
    expression
        Genes x samples log-expression (e.g. :func:`log_cpm`).
    design
        Samples x coefficients, full rank, at least one residual df; last column tested.
    sets
        Set name -> row indices of `expression` (at least 2 genes each).
    inter_gene_correlation
        None: estimate rho per set from the residuals (CAMERA's original method); a number:
        use it for every set.

    Returns
    -------
    (table, z): the table has one row per set (index: set name) with ``n_genes``,
    ``correlation`` (rho used), ``statistic`` (the two-sample t), ``pvalue`` (two-sided);
    z holds each gene's z score (positive = higher where the tested coefficient is positive).
    """
    y = np.asarray(expression, dtype=float)
    x = np.asarray(design, dtype=float)
    n_genes, n_samples = y.shape
    n_coef = x.shape[1]
    df_residual = n_samples - n_coef
    q, r = np.linalg.qr(x, mode="complete")
    if df_residual < 1 or np.linalg.matrix_rank(x) < n_coef:
        raise UserInputError(
            f"the enrichment design ({n_samples} pseudobulks, {n_coef} coefficients) is not of "
            "full rank with a residual degree of freedom; drop covariates from "
            "comparison.covariates or add donors."
        )
    effects = q.T @ y.T  # samples x genes: first n_coef rows the fit, the rest residual
    unscaled_t = effects[n_coef - 1] * np.sign(r[n_coef - 1, n_coef - 1])
    residual = effects[n_coef:]
    sigma2 = np.mean(residual**2, axis=0)
    standardised = residual / np.sqrt(np.maximum(sigma2, 1e-8))
    post, _, df_prior = squeeze_var(sigma2, float(df_residual))
    z = _t_to_z(unscaled_t / np.sqrt(post), min(df_residual + df_prior, n_genes * df_residual))
    estimate = inter_gene_correlation is None
    df_camera = min(df_residual, n_genes - 2) if estimate else n_genes - 2
    mean_all, var_all = float(z.mean()), float(z.var(ddof=1))
    rows = {}
    for name, index in sets.items():
        index = np.asarray(index, dtype=int)
        m = index.size
        m2 = n_genes - m
        if estimate:
            vif = m * float(np.mean(standardised[:, index].mean(axis=1) ** 2))
            rho = (vif - 1) / (m - 1)
        else:
            rho = float(inter_gene_correlation)
            vif = 1 + (m - 1) * rho
        delta = n_genes / m2 * (float(z[index].mean()) - mean_all)
        pooled = ((n_genes - 1) * var_all - delta**2 * m * m2 / n_genes) / (n_genes - 2)
        t = delta / np.sqrt(pooled * (max(vif, 1.0) / m + 1 / m2))
        tail = min(stats.t.cdf(t, df_camera), stats.t.sf(t, df_camera))
        rows[name] = {
            "n_genes": m,
            "correlation": rho,
            "statistic": t,
            "pvalue": min(1.0, 2 * tail),
        }
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=["n_genes", "correlation", "statistic", "pvalue"]
    )
    return table, z


def enrich_cell_type(
    de: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    enrichment: EnrichmentParams,
    contrast: Contrast,
    *,
    pseudobulks: Pseudobulks | None = None,
    low_power_max_replicates: int = 3,
    numeric_covariates: Collection[str] = (),
    condition_key: str = "condition",
    prespecified: Collection[str] = (),
    rank_by: str = "stat",
    n_leading: int = 10,
) -> pd.DataFrame:
    """Enrichment of every gene set in one cell type's differential expression.

    A donor-level (pseudobulk) DE table is tested by :func:`camera` on its donors'
    pseudobulks: log-CPM (:func:`log_cpm`) of the genes the DE test gave a p-value, the design
    intercept + condition + the covariates the DE test used. The earlier competitive Wilcoxon
    test on the DE statistics treated genes as independent; co-expressed sets (cell cycle,
    stress) then came out at tiny p-values with nothing planted, because genes that rise and
    fall together from donor to donor are one piece of evidence, not m. CAMERA estimates that
    correlation from the donors' residuals and widens the variance by it.

    A cell-level (exploratory) DE table has no donor replication: its sets get a ranking only,
    the AUC of the set's DE statistics against the other genes' with ``method``
    :data:`METHOD_RANKING`, no p-value, and a note saying so.

    Genes without a p-value in the DE table (DESeq2's Cook's-distance outliers, filtered or
    unfitted genes) are left out of both; the statistics of such genes are not evidence.

    Parameters
    ----------
    de
        One cell type's DE table (:data:`cordatlas.compare.de_summary.DE_COLUMNS`): ``gene``,
        ``pvalue``, `rank_by`, ``method``, ``evidence``, ``covariates``, one cell type.
    gene_sets
        Set name -> gene symbols (exact, case-sensitive; duplicates count once; absent symbols
        count in ``n_missing``).
    enrichment
        config ``enrichment``: ``min_set_size`` / ``max_set_size`` tested genes (outside: NaN
        and a note); ``inter_gene_correlation`` (None: estimated per set).
    contrast
        (condition, reference): which pseudobulks are the condition's.
    pseudobulks
        The cell type's pseudobulk counts and metadata; required for a pseudobulk DE table.
    low_power_max_replicates
        config ``comparison.low_power_max_replicates``: tested rows with at most this many
        donors in a group are marked ``low_power``.
    numeric_covariates
        config ``comparison.numeric_covariates``: those of the DE table's covariates that enter
        the design as one centred column each (as in the DE test), not as dummies.
    prespecified
        Names of the sets the library expects to change in this cell type
        (:func:`cordatlas.genesets.library.prespecified_sets`): their own BH family.
    rank_by
        Statistic of a ranking-only table (signed: positive = higher in the condition).
    n_leading
        Set genes listed in ``leading_genes``: the most extreme in the set's direction.

    Returns
    -------
    DataFrame
        :data:`ENRICHMENT_COLUMNS`, one row per set in the order given. ``auc`` = P(gene
        statistic of a set gene > that of another gene), ties one half (CAMERA's z scores for a
        tested table, `rank_by` otherwise); ``correlation`` the inter-gene correlation used;
        ``statistic`` CAMERA's t; ``direction`` ``up`` or ``down``; ``padj`` Benjamini-Hochberg
        over the tested sets of this cell type within the set's ``family`` (``prespecified``:
        among `prespecified`; else ``exploratory``), ``padj_all`` over all of them;
        ``evidence`` the DE table's label.

    Raises
    ------
    UserInputError
        Missing columns, several cell types or evidence labels, duplicated genes, inconsistent
        size limits, or a pseudobulk table without its pseudobulks.
    """
    cell_type, evidence, method = _check_de_table(de, enrichment, rank_by=rank_by)
    tested = de[pd.to_numeric(de["pvalue"], errors="coerce").notna()]
    if method == PSEUDOBULK_DE_METHOD:
        if pseudobulks is None:
            raise UserInputError(
                f"the DE table of cell type {cell_type!r} is a pseudobulk test but its "
                "pseudobulk counts were not given; rerun test_pseudobulk_de for it."
            )
        out = _camera_rows(
            tested, gene_sets, enrichment, contrast, pseudobulks, cell_type=cell_type,
            condition_key=condition_key, n_leading=n_leading, numeric=numeric_covariates,
        )  # fmt: skip
    else:
        out = _ranking_rows(tested, gene_sets, enrichment, rank_by=rank_by, n_leading=n_leading)
    out = out.reindex(columns=ENRICHMENT_COLUMNS).assign(cell_type=cell_type)
    out[EVIDENCE] = evidence
    pvalue = pd.to_numeric(out["pvalue"], errors="coerce")
    smaller = np.minimum(
        pd.to_numeric(out["n_condition"], errors="coerce"),
        pd.to_numeric(out["n_reference"], errors="coerce"),
    )
    out[LOW_POWER] = pvalue.notna() & (smaller <= low_power_max_replicates)
    family, padj, padj_all = adjust_by_family(pvalue, out["gene_set"].isin(set(prespecified)))
    out["family"], out["padj"], out["padj_all"] = family, padj, padj_all
    check_evidence(out[EVIDENCE], table="enrichment")
    log.info(
        "enrichment of %s (%s, %d genes with a p-value): %d of %d sets tested",
        cell_type or "DE table",
        out["method"].iloc[0] if len(out) else method,
        len(tested),
        int(out["pvalue"].notna().sum()),
        len(out),
    )
    return out


def _check_de_table(
    de: pd.DataFrame, enrichment: EnrichmentParams, *, rank_by: str
) -> tuple[str, str, str]:
    """The DE table's one cell type ("" if unnamed), evidence label and method; limits checked."""
    require_columns(
        de.columns,
        ["gene", "pvalue", rank_by, EVIDENCE],
        table="DE table",
        fix=f"available: {sorted(map(str, de.columns))}; pass a DE table written by the DE rules.",
    )
    min_size, max_size = enrichment.min_set_size, enrichment.max_set_size
    if min_size < 2 or max_size < min_size:
        raise UserInputError(
            f"gene-set size limits min_size={min_size}, max_size={max_size} must satisfy "
            "2 <= min_size <= max_size; fix enrichment.min_set_size and max_set_size in the "
            "config."
        )
    cell_type = _one_value(de, "cell_type", what="cell types")
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
    method = _one_value(de, "method", what="methods")
    return cell_type, labels[0] if labels else NOT_TESTABLE, method


def _one_value(de: pd.DataFrame, column: str, *, what: str) -> str:
    """The single value of `column` ("" when the column is absent or empty)."""
    if column not in de.columns:
        return ""
    values = de[column].dropna().astype(str).unique()
    if len(values) > 1:
        raise UserInputError(
            f"DE table holds several {what} ({', '.join(sorted(values)[:5])}); pass one "
            "cell type's table at a time."
        )
    return str(values[0]) if len(values) else ""


def _set_members(
    genes: pd.Index, gene_sets: Mapping[str, Sequence[str]]
) -> dict[str, tuple[np.ndarray, int]]:
    """Set name -> (positions in `genes`, symbols absent from them)."""
    members = {}
    for name, symbols in gene_sets.items():
        unique = list(dict.fromkeys(str(g) for g in symbols))
        where = genes.get_indexer(unique)
        members[str(name)] = (where[where >= 0], int((where < 0).sum()))
    return members


def _size_note(n_genes: int, n_universe: int, enrichment: EnrichmentParams) -> str:
    """Why a set of `n_genes` tested genes is not tested ("" if it is)."""
    if n_genes < enrichment.min_set_size:
        return f"fewer than min_size={enrichment.min_set_size} genes with a p-value ({n_genes})"
    if n_genes > enrichment.max_set_size:
        return f"more than max_size={enrichment.max_set_size} genes with a p-value ({n_genes})"
    if n_universe - n_genes < 2:
        return "too few genes outside the set to compare with"
    return ""


def _describe(
    statistic: np.ndarray, genes: pd.Index, index: np.ndarray, *, up: bool, n_leading: int
) -> tuple[float, str]:
    """AUC of the set's statistics against the rest (ties one half) and its leading genes."""
    ranks = stats.rankdata(statistic)
    m, m2 = index.size, statistic.size - index.size
    auc = (float(ranks[index].sum()) - m * (m + 1) / 2) / (m * m2)
    order = np.argsort(statistic[index], kind="stable")
    if up:
        order = order[::-1]
    return auc, ",".join(genes[index[order[:n_leading]]])


def _camera_rows(
    tested: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    enrichment: EnrichmentParams,
    contrast: Contrast,
    pseudobulks: Pseudobulks,
    *,
    cell_type: str,
    condition_key: str,
    n_leading: int,
    numeric: Collection[str] = (),
) -> pd.DataFrame:
    """CAMERA rows of every set over the pseudobulks' log-CPM of the genes with a p-value."""
    counts, design, is_condition = _pseudobulk_design(
        tested,
        contrast,
        pseudobulks,
        cell_type=cell_type,
        condition_key=condition_key,
        numeric=numeric,
    )
    genes = counts.index
    members = _set_members(genes, gene_sets)
    sizes = {
        name: _size_note(where.size, genes.size, enrichment) for name, (where, _) in members.items()
    }
    runnable = {name: members[name][0] for name, why in sizes.items() if not why}
    if runnable:
        table, z = camera(
            log_cpm(counts.to_numpy()), design, runnable,
            inter_gene_correlation=enrichment.inter_gene_correlation,
        )  # fmt: skip
    rows = []
    for name, (where, n_missing) in members.items():
        row = {"gene_set": name, "n_genes": where.size, "n_missing": n_missing,
               "method": METHOD_CAMERA, NOTE: sizes[name],
               "n_condition": int(is_condition.sum()), "n_reference": int((~is_condition).sum())}  # fmt: skip
        if name in runnable:
            statistic = float(table.loc[name, "statistic"])
            auc, leading = _describe(z, genes, where, up=statistic > 0, n_leading=n_leading)
            row.update(
                auc=auc,
                correlation=float(table.loc[name, "correlation"]),
                statistic=statistic,
                direction="up" if statistic > 0 else "down",
                pvalue=float(table.loc[name, "pvalue"]),
                leading_genes=leading,
            )
        rows.append(_blank_row() | row)
    return pd.DataFrame(rows)


def _blank_row() -> dict[str, object]:
    return {"auc": np.nan, "correlation": np.nan, "statistic": np.nan, "direction": "",
            "pvalue": np.nan, "leading_genes": ""}  # fmt: skip


def _pseudobulk_design(
    tested: pd.DataFrame,
    contrast: Contrast,
    pseudobulks: Pseudobulks,
    *,
    cell_type: str,
    condition_key: str,
    numeric: Collection[str] = (),
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Counts of the tested genes, the design (tested condition column last), condition mask."""
    obs = pseudobulks.obs.copy()
    obs.index = obs.index.astype(str)
    counts = pseudobulks.counts.copy()
    counts.index, counts.columns = counts.index.astype(str), counts.columns.astype(str)
    covariates = [
        c for c in str(_one_value(tested, "covariates", what="covariate lists")).split(",") if c
    ]
    require_columns(
        obs.columns,
        [condition_key, *covariates],
        table=f"pseudobulk metadata of cell type {cell_type!r}",
        fix="rerun test_pseudobulk_de, which writes the metadata it tested with.",
    )
    missing = sorted(set(obs.index) - set(counts.columns))
    if missing:
        raise UserInputError(
            f"pseudobulk {missing[0]!r} of cell type {cell_type!r} has metadata but no counts "
            f"({len(missing)} such); rerun test_pseudobulk_de for it."
        )
    obs = obs.loc[obs[condition_key].astype(str).isin(contrast.as_tuple())]
    genes = pd.Index(tested["gene"].astype(str))
    absent = genes.difference(counts.index)
    if len(absent):
        raise UserInputError(
            f"gene {absent[0]!r} of the DE table of cell type {cell_type!r} has no pseudobulk "
            f"counts ({len(absent)} such); the DE table and its counts come from different runs: "
            "rerun test_pseudobulk_de."
        )
    counts = counts.loc[genes, obs.index]
    x = design_matrix(obs, condition_key, contrast.condition, covariates, numeric=numeric)
    x = x[:, [0, *range(2, x.shape[1]), 1]]  # the tested condition column last, as camera wants
    is_condition = obs[condition_key].astype(str).to_numpy() == contrast.condition
    return counts, x, is_condition


def _ranking_rows(
    tested: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    enrichment: EnrichmentParams,
    *,
    rank_by: str,
    n_leading: int,
) -> pd.DataFrame:
    """Ranking-only rows: the AUC of each set's `rank_by` statistics, no p-value."""
    statistic = pd.to_numeric(tested[rank_by], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(statistic)
    statistic = statistic[finite]
    genes = pd.Index(tested["gene"].astype(str).to_numpy()[finite])
    rows = []
    for name, (where, n_missing) in _set_members(genes, gene_sets).items():
        note = _size_note(where.size, genes.size, enrichment)
        row = {"gene_set": name, "n_genes": where.size, "n_missing": n_missing,
               "method": METHOD_RANKING, NOTE: note or RANKING_NOTE,
               "n_condition": _count(tested, "n_replicates_condition"),
               "n_reference": _count(tested, "n_replicates_reference")}  # fmt: skip
        if not note:
            auc, leading = _describe(statistic, genes, where, up=True, n_leading=n_leading)
            if auc < 0.5:
                _, leading = _describe(statistic, genes, where, up=False, n_leading=n_leading)
            row.update(auc=auc, direction="up" if auc > 0.5 else "down", leading_genes=leading)
        rows.append(_blank_row() | row)
    return pd.DataFrame(rows)


def _count(table: pd.DataFrame, column: str) -> float:
    values = pd.to_numeric(table.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else np.nan


def enrich_by_cell_type(
    de: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    enrichment: EnrichmentParams,
    contrast: Contrast,
    *,
    pseudobulks: Mapping[str, Pseudobulks],
    low_power_max_replicates: int = 3,
    numeric_covariates: Collection[str] = (),
    condition_key: str = "condition",
    prespecified: Mapping[str, Collection[str]] | None = None,
    rank_by: str = "stat",
    n_leading: int = 10,
) -> pd.DataFrame:
    """:func:`enrich_cell_type` for each cell type of a combined DE table, results stacked.

    Parameters
    ----------
    de
        DE tables of several cell types in one (column ``cell_type``), e.g. ``de_all.tsv.gz``.
    pseudobulks
        Cell type -> its :class:`Pseudobulks` (:func:`read_pseudobulks`), for every pseudobulk
        DE table.
    gene_sets, enrichment, contrast, low_power_max_replicates, numeric_covariates, condition_key
        As in :func:`enrich_cell_type`; BH stays within each cell type.
    prespecified
        Cell type -> the sets the library expects to change there (their own BH family);
        None or a cell type without an entry: every set exploratory.
    rank_by, n_leading
        As in :func:`enrich_cell_type`.

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
        enrich_cell_type(
            table,
            gene_sets,
            enrichment,
            contrast,
            pseudobulks=pseudobulks.get(str(cell_type)),
            low_power_max_replicates=low_power_max_replicates,
            numeric_covariates=numeric_covariates,
            condition_key=condition_key,
            prespecified=(prespecified or {}).get(str(cell_type), ()),
            rank_by=rank_by,
            n_leading=n_leading,
        )  # fmt: skip
        for cell_type, table in de.groupby(de["cell_type"].astype(str), sort=False)
    ]
    tables = [t for t in tables if not t.empty]
    if not tables:
        return pd.DataFrame(columns=ENRICHMENT_COLUMNS)
    return pd.concat(tables, ignore_index=True)


def pseudobulk_paths(table: str | Path) -> tuple[Path, Path]:
    """Counts and metadata files test_pseudobulk_de writes beside a cell type's DE table.

    ``results/de/pseudobulk/{slug}.tsv`` -> ``.../counts/{slug}_counts.tsv.gz`` and
    ``.../counts/{slug}_pseudobulks.tsv`` (the rule's declared outputs, made by the same job).
    """
    table = Path(table)
    folder = table.parent / "counts"
    return folder / f"{table.stem}_counts.tsv.gz", folder / f"{table.stem}_pseudobulks.tsv"


def read_pseudobulks(tables: Sequence[str | Path]) -> dict[str, Pseudobulks]:
    """Cell type -> :class:`Pseudobulks` for each pseudobulk DE table among `tables`.

    Tables of other methods (cell-level) and tables without genes are skipped; the cell type
    is the table's own ``cell_type``.
    """
    from cordatlas.compare.de_summary import read_de_table

    found: dict[str, Pseudobulks] = {}
    for table in tables:
        de = read_de_table(table)
        if de.empty or set(de["method"].astype(str)) != {PSEUDOBULK_DE_METHOD}:
            continue
        counts_path, obs_path = pseudobulk_paths(table)
        if not counts_path.exists() or not obs_path.exists():
            raise UserInputError(
                f"{counts_path} or {obs_path} (the pseudobulks behind {table}) is missing; "
                "rerun test_pseudobulk_de for that cell type (snakemake --forcerun "
                "test_pseudobulk_de)."
            )
        counts = pd.read_csv(counts_path, sep="\t", index_col=0, keep_default_na=False)
        counts.index = counts.index.astype(str)
        obs = pd.read_csv(obs_path, sep="\t", index_col=0, dtype=str, keep_default_na=False)
        found[str(de["cell_type"].iloc[0])] = Pseudobulks(counts=counts, obs=obs)
    return found
