"""Donor-level differential expression of one cell type: PyDESeq2 on its pseudobulks."""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.checks import check_contrast, require_columns
from cordatlas.compare.contamination import contamination_flags
from cordatlas.compare.de_summary import DE_COLUMNS, empty_de_table, finish_de_table
from cordatlas.compare.donor_stats import (
    PRESPECIFIED,
    adjust_by_family,
    numeric_values,
    usable_covariates,
)
from cordatlas.compare.plan import METHOD_EVIDENCE, METHOD_PSEUDOBULK, pseudobulk_mask
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import library_sets, prespecified_sets
from cordatlas.params import ComparisonParams, Contrast
from cordatlas.vocabulary import LOW_POWER

#: Genes besides the re-tested ones in each leave-one-out refit (size factors and the
#: dispersion trend are estimated from them); None refits on every tested gene. Measured on the
#: realistic simulator (25,000 cells, 20,000 genes, 4 vs 4 donors; CD14 monocytes and naive CD4
#: T cells, 13-14k tested genes, 18 significant genes each): a full refit per donor took 217-225 s
#: per cell type on 2 cores, this one 32-35 s; the survives_leave_one_out verdict agreed for 36 of
#: 36 genes, loo_max_pvalue within a median 0.09-0.13 log10 units (largest 1.9).
LOO_BACKGROUND_GENES = 2000


@dataclass(frozen=True)
class _Replicates:
    """The pseudobulks of one cell type that a test uses."""

    obs: pd.DataFrame
    counts: np.ndarray  # pseudobulks x genes, int64
    genes: pd.Index
    is_condition: np.ndarray
    n_cells: np.ndarray

    @property
    def n_condition(self) -> int:
        return int(self.is_condition.sum())

    @property
    def n_reference(self) -> int:
        return int((~self.is_condition).sum())


def pseudobulk_de(
    pseudobulk: ad.AnnData,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    cell_type: str,
    condition_key: str = "condition",
    n_cpus: int = 1,
    prespecified: Collection[str] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Donor-level differential expression of one cell type: DESeq2 on its pseudobulks.

    The replicates are the cell type's pseudobulks with at least
    ``comparison.min_cells_per_replicate`` cells, so each donor counts once however many cells
    it has (no pseudoreplication; Squair et al. 2021, Nat Commun). Genes are kept when they
    have at least ``comparison.min_gene_counts`` counts in at least as many pseudobulks as the
    smaller group holds (the spirit of edgeR's filterByExpr: a gene expressed in every
    replicate of one group can be tested). PyDESeq2 (Love et al. 2014 model) fits
    ``~covariates + condition``; the Wald test of condition gives log2FC > 0 for genes higher
    in the contrast's condition. ``padj`` is Benjamini-Hochberg within the gene's ``family``
    (:func:`cordatlas.compare.donor_stats.adjust_by_family`): ``prespecified`` for the genes in
    `prespecified` (the library's expectations for this cell type, :func:`prespecified_genes`),
    ``exploratory`` for the rest; ``padj_all`` over all tested genes (the expression filter
    replaces DESeq2's independent filtering); genes whose p-value DESeq2 withholds (Cook's
    outliers) keep NaN. The leave-one-out columns stay empty here
    (:func:`leave_one_out_de` fills them).
    ``log2FC`` is the unshrunk (maximum-likelihood) coefficient the Wald test uses;
    ``log2FC_shrunk`` the same coefficient under PyDESeq2's apeGLM prior (``lfc_shrink``; Zhu
    et al. 2019, Bioinformatics 35:2084), which pulls noisy, low-count estimates towards 0.
    ``low_power`` marks every row when the smaller group has at most
    ``comparison.low_power_max_replicates`` donors. ``contamination_flag`` and
    ``contamination_source``: :func:`cordatlas.compare.contamination.contamination_flags` on
    all cell types' pseudobulks of the same donors.

    Parameters
    ----------
    pseudobulk
        Result of :func:`cordatlas.compare.pseudobulk.aggregate_pseudobulk` (all cell types).
    comparison
        config ``comparison``: keys, ``covariates`` (pseudobulk obs columns adjusted for:
        ``numeric_covariates`` as one centred continuous column each, PyDESeq2's formula
        detecting a float column as continuous; the others as categorical factors; those
        constant among these replicates, aliased with condition or leaving no residual degrees
        of freedom are dropped, see
        :func:`cordatlas.compare.donor_stats.usable_covariates`, and named in the notes),
        minimum cells, gene counts and replicates.
    contrast
        (condition, reference).
    cell_type
        The cell type to test.
    n_cpus
        Processes PyDESeq2 may use.
    prespecified
        Genes whose test is a pre-specified hypothesis in this cell type.

    Returns
    -------
    results
        :data:`cordatlas.compare.de_summary.DE_COLUMNS`, one row per tested gene, sorted by
        p-value; method ``pseudobulk_deseq2``, evidence ``donor_level``. Empty when no gene
        passes the filter.
    notes
        Sentences for the log and the report: genes filtered, covariates dropped, the design.

    Raises
    ------
    UserInputError
        The cell type, a key or a covariate is missing, or a group has fewer usable
        pseudobulks than the minimum (the plan sends such cell types elsewhere).
    """
    pair = check_contrast(contrast.as_tuple())
    covariates = _check_de_inputs(
        pseudobulk.obs, comparison, cell_type=cell_type, condition_key=condition_key
    )
    reps = _select_replicates(
        pseudobulk, comparison, pair, cell_type=cell_type, condition_key=condition_key
    )
    notes: list[str] = []
    expressed = _filter_genes(reps, comparison.min_gene_counts, cell_type=cell_type, notes=notes)
    numeric = [c for c in covariates if c in comparison.numeric_covariates]
    design, used, dropped = _design(reps, covariates, numeric=numeric, condition_key=condition_key)
    notes += [f"{cell_type}: covariate {c!r} not used: {why}." for c, why in dropped.items()]
    notes.append(_design_note(reps, used, comparison.replicate_key, pair, cell_type, condition_key))
    if not expressed.any():
        return empty_de_table(), notes
    table, shrunk = _run_deseq2(
        reps.counts[:, expressed],
        design,
        genes=reps.genes[expressed],
        condition_key=condition_key,
        covariates=used,
        numeric=numeric,
        contrast=pair,
        n_cpus=n_cpus,
        notes=notes,
        cell_type=cell_type,
    )
    results = _format_results(table, reps, cell_type=cell_type, covariates=used)
    results["family"], results["padj"], results["padj_all"] = adjust_by_family(
        results["pvalue"], results["gene"].isin({str(g) for g in prespecified}).to_numpy()
    )
    n_pre = int((results["family"] == PRESPECIFIED).sum())
    notes.append(
        f"{cell_type}: padj within families: {n_pre} pre-specified genes (library sets expected "
        f"to change in {cell_type}) and {len(results) - n_pre} exploratory."
    )
    results["log2FC_shrunk"] = shrunk.to_numpy(dtype=float)
    results = _flag_results(results, pseudobulk, reps, comparison, cell_type=cell_type)
    flagged = int(
        (results["contamination_flag"] & (results["padj"].fillna(1.0) < comparison.alpha)).sum()
    )
    if flagged:
        notes.append(
            f"{cell_type}: {flagged} genes at padj < {comparison.alpha:g} carry "
            "contamination_flag (another cell type or ambient RNA can explain them)."
        )
    withheld = int(results["pvalue"].isna().sum())
    if withheld:
        notes.append(
            f"{cell_type}: {withheld} genes have no p-value (DESeq2 flagged a count outlier "
            "by Cook's distance or the gene could not be fitted)."
        )
    return finish_de_table(results, table=f"pseudobulk DE of {cell_type}"), notes


def prespecified_genes(library: Mapping[str, Any], cell_type: str) -> set[str]:
    """The genes of the library's sets that expect a change in `cell_type` (any direction).

    The genes of :func:`cordatlas.genesets.library.prespecified_sets`: the same rule as the
    signature tests' and enrichment's pre-specified family.
    """
    sets = library_sets(library)
    return {str(g) for name in prespecified_sets(library, cell_type) for g in sets[name]["genes"]}


def leave_one_out_de(
    pseudobulk: ad.AnnData,
    results: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    cell_type: str,
    condition_key: str = "condition",
    n_cpus: int = 1,
    background_genes: int | None = LOO_BACKGROUND_GENES,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """Rows of :func:`pseudobulk_de` significant in their family, re-tested without each donor.

    Each refit runs on the re-tested genes plus `background_genes` other tested genes drawn
    at random (seeded; all tested genes when there are no more, or with None): size factors
    and the dispersion trend need many genes, not every one, and PyDESeq2's per-gene fits made
    full refits the workflow's largest cost (see :data:`LOO_BACKGROUND_GENES`).

    For each of the cell type's replicates in turn, PyDESeq2 is refitted with the same design
    on every other replicate and the same tested genes (so size factors and the dispersion
    trend rest on all genes, as in the main fit); no shrinkage. The per-gene steps after
    the dispersion trend and prior run on the re-tested genes only (:func:`_refit_pvalues`:
    the same p-values, about half the cost of a refit). Re-tested are the genes at
    ``padj < comparison.alpha``, at most ``comparison.loo_max_genes`` of them (the smallest
    p-values; a note says how many were left out). Each re-tested row gets ``loo_max_pvalue``
    (the largest p over the refits), ``loo_weakest_donor`` (whose removal gave it) and
    ``survives_leave_one_out`` (every refit's p < alpha; False where leaving a donor out
    leaves a group below ``comparison.min_replicates_per_group`` or no p-value). Other rows stay
    empty. The same rule as the signature tests' (one refit per donor, the largest p).

    Returns
    -------
    results, notes
        `results` with the leave-one-out columns filled; sentences for the log.
    """
    pair = check_contrast(contrast.as_tuple())
    results = results.copy()
    results["loo_max_pvalue"] = np.nan
    results["loo_weakest_donor"] = ""
    results["survives_leave_one_out"] = pd.array([pd.NA] * len(results), dtype="boolean")
    significant = results.index[results["padj"].fillna(1.0).to_numpy() < comparison.alpha]
    if significant.empty:
        return results, []
    order = results.loc[significant].sort_values("pvalue", kind="mergesort").index
    chosen = order[: comparison.loo_max_genes]
    notes = []
    if len(order) > len(chosen):
        notes.append(
            f"{cell_type}: leave-one-out re-tested the {len(chosen)} significant genes with the "
            f"smallest p-values (comparison.loo_max_genes); {len(order) - len(chosen)} more "
            "significant genes were not re-tested (survives_leave_one_out empty)."
        )
    covariates = _check_de_inputs(
        pseudobulk.obs, comparison, cell_type=cell_type, condition_key=condition_key
    )
    reps = _select_replicates(
        pseudobulk, comparison, pair, cell_type=cell_type, condition_key=condition_key
    )
    genes = pd.Index(results["gene"].astype(str))
    targets = genes[results.index.get_indexer(chosen)]
    genes = _refit_genes(genes, targets, background=background_genes, seed=seed)
    column = pd.Index(reps.genes).get_indexer(genes)
    numeric = [c for c in covariates if c in comparison.numeric_covariates]
    donors = reps.obs[comparison.replicate_key].astype(str).to_numpy()
    pvalues = pd.DataFrame(np.nan, index=donors, columns=targets)
    minimum = max(comparison.min_replicates_per_group, 2)
    for i, donor in enumerate(donors):
        keep = np.arange(len(donors)) != i
        if min(reps.is_condition[keep].sum(), (~reps.is_condition[keep]).sum()) < minimum:
            continue
        sub = _Replicates(
            obs=reps.obs.iloc[keep],
            counts=reps.counts[keep],
            genes=reps.genes,
            is_condition=reps.is_condition[keep],
            n_cells=reps.n_cells[keep],
        )
        design, used, _ = _design(sub, covariates, numeric=numeric, condition_key=condition_key)
        refit = _refit_pvalues(
            sub.counts[:, column], design, genes=genes, targets=targets,
            condition_key=condition_key, covariates=used, numeric=numeric, contrast=pair,
            n_cpus=n_cpus,
        )  # fmt: skip
        pvalues.loc[donor] = refit.to_numpy(dtype=float)
    for index, gene in zip(chosen, targets, strict=True):
        p = pvalues[gene]
        if p.isna().any():
            results.at[index, "loo_weakest_donor"] = str(p.index[p.isna()][0])
            results.at[index, "survives_leave_one_out"] = False
            continue
        results.at[index, "loo_max_pvalue"] = float(p.max())
        results.at[index, "loo_weakest_donor"] = str(p.idxmax())
        results.at[index, "survives_leave_one_out"] = bool((p < comparison.alpha).all())
    fragile = int((results.loc[chosen, "survives_leave_one_out"] == False).sum())  # noqa: E712
    notes.append(
        f"{cell_type}: leave-one-donor-out ({len(donors)} refits): {len(chosen) - fragile} of "
        f"{len(chosen)} re-tested significant genes survive, {fragile} fragile."
    )
    return results, notes


def pseudobulk_de_each(
    pseudobulk: ad.AnnData,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    cell_types: Sequence[str],
    prespecified: Mapping[str, Collection[str]],
    processes: int = 1,
) -> Iterator[tuple[str, pd.DataFrame, list[str]]]:
    """:func:`pseudobulk_de` then :func:`leave_one_out_de` for each cell type, in order.

    With ``processes > 1`` the cell types run in that many worker processes at once (each
    with one PyDESeq2 process; leftover processes go to PyDESeq2 when there are fewer cell
    types than processes). Cell types are independent tests and PyDESeq2 fits each gene on its
    own, so the results are the same however they are spread; parallel cell types also run
    the serial parts (dispersion trend, tables, contamination flags) side by side, and the
    caller can write one cell type's files while the next ones are fitted.

    Parameters
    ----------
    pseudobulk, comparison, contrast
        As for :func:`pseudobulk_de`.
    cell_types
        The cell types to test (the plan's donor-level ones).
    prespecified
        Per cell type, the genes of its pre-specified family (missing: none).
    processes
        Processes to use in all.

    Yields
    ------
    cell_type, results, notes
        The leave-one-out-filled results and the notes of both steps, in `cell_types` order.
    """
    workers = max(1, min(processes, len(cell_types)))
    n_cpus = max(1, processes // workers)
    jobs = [
        (pseudobulk, comparison, contrast, ct, set(prespecified.get(ct, ())), n_cpus)
        for ct in cell_types
    ]
    if workers == 1:
        for job in jobs:
            yield (job[3], *_de_with_leave_one_out(*job))
        return
    # fork: the workers start without importing anything again (a spawned worker spends
    # seconds importing anndata and PyDESeq2); nothing threaded runs in the parent before
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for cell_type, (results, notes) in zip(
            cell_types, pool.map(_de_with_leave_one_out, *zip(*jobs, strict=True)), strict=True
        ):
            yield cell_type, results, notes


def _de_with_leave_one_out(
    pseudobulk: ad.AnnData,
    comparison: ComparisonParams,
    contrast: Contrast,
    cell_type: str,
    prespecified: set[str],
    n_cpus: int,
) -> tuple[pd.DataFrame, list[str]]:
    """One cell type's :func:`pseudobulk_de` and :func:`leave_one_out_de`, notes joined."""
    results, notes = pseudobulk_de(
        pseudobulk, comparison, contrast, cell_type=cell_type, n_cpus=n_cpus,
        prespecified=prespecified,
    )  # fmt: skip
    results, loo_notes = leave_one_out_de(
        pseudobulk, results, comparison, contrast, cell_type=cell_type, n_cpus=n_cpus
    )
    return results, notes + loo_notes


def _refit_genes(
    tested: pd.Index, targets: pd.Index, *, background: int | None, seed: int
) -> pd.Index:
    """`targets` plus up to `background` other tested genes (seeded draw), in tested order."""
    others = tested[~tested.isin(targets)]
    if background is None or len(others) <= background:
        return tested
    rng = np.random.default_rng(seed)
    drawn = others[np.sort(rng.choice(len(others), size=background, replace=False))]
    return tested[tested.isin(targets) | tested.isin(drawn)]


def _check_de_inputs(
    obs: pd.DataFrame, comparison: ComparisonParams, *, cell_type: str, condition_key: str
) -> list[str]:
    """The keys, covariates and cell type exist; returns the covariates without duplicates."""
    require_columns(
        obs.columns,
        [comparison.cell_type_key, condition_key, comparison.replicate_key, "n_cells"],
        table="pseudobulk obs",
        fix="build it with aggregate_pseudobulk using the same keys.",
    )
    covariates = list(dict.fromkeys(str(c) for c in comparison.covariates))
    if condition_key in covariates:
        raise UserInputError(
            f"covariate {condition_key!r} is the condition itself; remove it from "
            "config comparison.covariates."
        )
    absent = [c for c in covariates if c not in obs.columns]
    if absent:
        raise UserInputError(
            f"covariate(s) {absent} are not pseudobulk metadata (available: "
            f"{sorted(map(str, obs.columns))}); aggregate the pseudobulks with the same "
            "comparison.covariates or remove them from config comparison.covariates."
        )
    types = set(obs[comparison.cell_type_key].astype(str))
    if cell_type not in types:
        raise UserInputError(
            f"cell type {cell_type!r} has no pseudobulk (cell types: {sorted(types)}); "
            "use a name from the plan."
        )
    return covariates


def _select_replicates(
    pseudobulk: ad.AnnData,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    *,
    cell_type: str,
    condition_key: str,
) -> _Replicates:
    """The cell type's pseudobulks with enough cells; refuse too few per group."""
    condition, reference = contrast
    min_cells = comparison.min_cells_per_replicate
    use = pseudobulk_mask(
        pseudobulk.obs,
        cell_type=cell_type,
        conditions=contrast,
        cell_type_key=comparison.cell_type_key,
        condition_key=condition_key,
        min_cells=min_cells,
    )
    sub_obs = pseudobulk.obs.loc[use]
    is_c = sub_obs[condition_key].astype(str).to_numpy() == condition
    n_c, n_r = int(is_c.sum()), int((~is_c).sum())
    needed = max(comparison.min_replicates_per_group, 2)
    if min(n_c, n_r) < needed:
        raise UserInputError(
            f"cell type {cell_type!r} has {n_c} {condition} and {n_r} {reference} pseudobulks "
            f"with >= {min_cells} cells; a donor-level test needs >= {needed} per group. "
            "plan_comparisons sends it to the exploratory cell-level test or leaves it "
            "untested."
        )
    counts = pseudobulk.X[np.flatnonzero(use)]
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    return _Replicates(
        obs=sub_obs,
        counts=counts.astype(np.int64),
        genes=pseudobulk.var_names.astype(str),
        is_condition=is_c,
        n_cells=pd.to_numeric(sub_obs["n_cells"]).to_numpy(),
    )


def _filter_genes(
    reps: _Replicates, min_gene_counts: int, *, cell_type: str, notes: list[str]
) -> np.ndarray:
    """Genes with >= `min_gene_counts` counts in at least as many pseudobulks as the smaller group."""
    min_samples = min(reps.n_condition, reps.n_reference)
    expressed = (reps.counts >= min_gene_counts).sum(axis=0) >= min_samples
    n_kept, n_genes = int(expressed.sum()), len(reps.genes)
    notes.append(
        f"{cell_type}: {n_kept} of {n_genes} genes tested (>= {min_gene_counts} counts in "
        f">= {min_samples} of {reps.n_condition + reps.n_reference} pseudobulks); "
        f"{n_genes - n_kept} filtered out as too lowly expressed."
    )
    return expressed


def _design(
    reps: _Replicates,
    covariates: Sequence[str],
    *,
    numeric: Sequence[str],
    condition_key: str,
) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """The replicates' condition and covariates (text; `numeric` ones as floats), the usable
    covariates, why not the rest."""
    design = pd.DataFrame(
        {condition_key: reps.obs[condition_key].astype(str).to_numpy()},
        index=reps.obs.index.astype(str),
    )
    for covariate in covariates:
        if covariate in numeric:
            design[covariate] = numeric_values(
                reps.obs[covariate], column=covariate, what="pseudobulk"
            )
        else:
            design[covariate] = reps.obs[covariate].astype(str).to_numpy()
    used, dropped = usable_covariates(
        design, covariates, condition_key=condition_key, numeric=numeric
    )
    return design, used, dropped


def _design_note(
    reps: _Replicates,
    used: Sequence[str],
    replicate_key: str,
    contrast: tuple[str, str],
    cell_type: str,
    condition_key: str,
) -> str:
    """The design and test in words, with the replicates and cells per group."""
    condition, reference = contrast
    formula_shown = "~" + " + ".join([*used, condition_key])
    cells_c = int(reps.n_cells[reps.is_condition].sum())
    cells_r = int(reps.n_cells[~reps.is_condition].sum())
    return (
        f"{cell_type}: PyDESeq2 design {formula_shown}, Wald test {condition} vs {reference} "
        f"({reps.n_condition} vs {reps.n_reference} {replicate_key}s, {cells_c} vs "
        f"{cells_r} cells); padj: Benjamini-Hochberg within each family of tested genes."
    )


def _format_results(
    table: pd.DataFrame, reps: _Replicates, *, cell_type: str, covariates: Sequence[str]
) -> pd.DataFrame:
    """PyDESeq2's results table in :data:`DE_COLUMNS`."""
    return pd.DataFrame(
        {
            "cell_type": cell_type,
            "gene": table.index.astype(str),
            "base_mean": table["baseMean"].to_numpy(dtype=float),
            "log2FC": table["log2FoldChange"].to_numpy(dtype=float),
            "lfcSE": table["lfcSE"].to_numpy(dtype=float),
            "stat": table["stat"].to_numpy(dtype=float),
            "pvalue": table["pvalue"].to_numpy(dtype=float),
            "padj": np.nan,
            "method": METHOD_PSEUDOBULK,
            "evidence": METHOD_EVIDENCE[METHOD_PSEUDOBULK],
            "n_replicates_condition": reps.n_condition,
            "n_replicates_reference": reps.n_reference,
            "n_cells_condition": int(reps.n_cells[reps.is_condition].sum()),
            "n_cells_reference": int(reps.n_cells[~reps.is_condition].sum()),
            "covariates": ",".join(covariates),
        },
        columns=DE_COLUMNS,
    )


def _flag_results(
    results: pd.DataFrame,
    pseudobulk: ad.AnnData,
    reps: _Replicates,
    comparison: ComparisonParams,
    *,
    cell_type: str,
) -> pd.DataFrame:
    """``low_power`` and the contamination columns added to the formatted results."""
    results = results.copy()
    smaller = min(reps.n_condition, reps.n_reference)
    results[LOW_POWER] = smaller <= comparison.low_power_max_replicates
    flags = contamination_flags(
        pseudobulk,
        results,
        cell_type=cell_type,
        donors=reps.obs[comparison.replicate_key].astype(str).tolist(),
        is_condition=reps.is_condition,
        cell_type_key=comparison.cell_type_key,
        replicate_key=comparison.replicate_key,
        max_fraction=comparison.contamination_max_fraction,
        min_explained=comparison.contamination_min_explained,
    )
    results["contamination_flag"] = flags["contamination_flag"].to_numpy()
    results["contamination_source"] = flags["contamination_source"].to_numpy()
    return results


def _pydeseq2_frame(
    counts: np.ndarray,
    design: pd.DataFrame,
    *,
    genes: pd.Index,
    condition_key: str,
    covariates: Sequence[str],
    numeric: Sequence[str],
    contrast: tuple[str, str],
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """PyDESeq2's counts frame, metadata (formula-safe column names) and formula."""
    # formula-safe column names: user column names may hold spaces or operators
    metadata = pd.DataFrame(index=design.index)
    metadata["condition"] = pd.Categorical(
        design[condition_key], categories=[contrast[1], contrast[0]]
    )
    terms = []
    for i, covariate in enumerate(covariates):
        name = f"covariate{i}"
        if covariate in numeric:
            # a float column is a continuous term in PyDESeq2's formula (one coefficient, log2
            # fold change per unit); centred, as DESeq2's vignette advises for numeric
            # covariates, so the intercept sits at the mean and the fit converges
            values = design[covariate].to_numpy(dtype=float)
            metadata[name] = values - values.mean()
        else:
            metadata[name] = pd.Categorical(design[covariate].astype(str))
        terms.append(name)
    formula = "~" + " + ".join([*terms, "condition"])
    frame = pd.DataFrame(counts, index=design.index, columns=pd.Index(genes.astype(str)))
    return frame, metadata, formula


def _run_deseq2(
    counts: np.ndarray,
    design: pd.DataFrame,
    *,
    genes: pd.Index,
    condition_key: str,
    covariates: Sequence[str],
    numeric: Sequence[str],
    contrast: tuple[str, str],
    n_cpus: int,
    notes: list[str],
    cell_type: str,
    shrink: bool = True,
) -> tuple[pd.DataFrame, pd.Series]:
    """PyDESeq2 fit, Wald test and apeGLM shrinkage; warnings become notes.

    Returns the (unshrunk) results table and the shrunk log2 fold changes (NaN without
    `shrink`), both by gene.
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats
    from threadpoolctl import threadpool_limits  # installed with scikit-learn, which PyDESeq2 needs

    from cordatlas.compare.batched_inference import BatchedInference

    frame, metadata, formula = _pydeseq2_frame(
        counts, design, genes=genes, condition_key=condition_key, covariates=covariates,
        numeric=numeric, contrast=contrast,
    )  # fmt: skip
    # PyDESeq2's own pipeline and objectives, its per-gene fits solved for all genes at once
    # (same results to optimiser tolerance; see batched_inference.py and docs/performance.md)
    inference = BatchedInference(n_cpus=n_cpus)
    # One BLAS thread: the per-gene fallbacks are thousands of tiny problems, and multithreaded
    # BLAS inside scipy's L-BFGS-B made them about 6x slower on a 2-core machine (19 s vs 3 s
    # for 8 pseudobulks x 1,200 genes). Parallelism comes from n_cpus processes instead.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        dds = DeseqDataSet(
            counts=frame,
            metadata=metadata,
            design=formula,
            refit_cooks=True,
            inference=inference,
            quiet=True,
        )
        dds.deseq2()
        stats = DeseqStats(
            dds,
            contrast=["condition", contrast[0], contrast[1]],
            inference=inference,
            quiet=True,
        )
        stats.summary()
        table = stats.results_df.copy()  # lfc_shrink overwrites log2FoldChange and lfcSE
        shrunk = pd.Series(np.nan, index=table.index)
        if shrink:
            # the Wald contrast is exactly the condition coefficient (reference = first category)
            coeff = next(c for c in stats.LFC.columns if str(c).startswith("condition["))
            stats.lfc_shrink(coeff=coeff)
            shrunk = stats.results_df["log2FoldChange"].astype(float)
    for message in dict.fromkeys(str(w.message) for w in caught if _worth_noting(w)):
        notes.append(f"{cell_type}: PyDESeq2: {message}")
    return table.reindex(frame.columns), shrunk.reindex(frame.columns)


def _refit_pvalues(
    counts: np.ndarray,
    design: pd.DataFrame,
    *,
    genes: pd.Index,
    targets: pd.Index,
    condition_key: str,
    covariates: Sequence[str],
    numeric: Sequence[str],
    contrast: tuple[str, str],
    n_cpus: int,
) -> pd.Series:
    """Wald p-values of `targets` from a PyDESeq2 fit on all `genes`, the same numbers as
    :func:`_run_deseq2` (``shrink=False``) gives them, at the per-gene cost of the targets only.

    Only three steps of PyDESeq2's pipeline use more than one gene: the size factors (median
    of ratios), the dispersion trend and the dispersion prior variance. They are fitted on
    every gene of `counts`; every later step (MAP dispersion, coefficients, Cook's distances
    and the outlier refit, Wald test) is one fit per gene and runs on a dataset of the targets
    alone carrying those three. PyDESeq2 refits its Cook's outlier genes the same way
    (``DeseqDataSet._refit_without_outliers``, pydeseq2 0.5: a sub-dataset with the main
    fit's size factors, trend and prior variance). The gene-wise dispersions of the targets
    are fitted again on the sub-dataset (a per-gene fit from the same counts and size
    factors: the same values). A unit test checks the p-values against the full pipeline's.
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats
    from threadpoolctl import threadpool_limits

    from cordatlas.compare.batched_inference import BatchedInference

    frame, metadata, formula = _pydeseq2_frame(
        counts, design, genes=genes, condition_key=condition_key, covariates=covariates,
        numeric=numeric, contrast=contrast,
    )  # fmt: skip
    inference = BatchedInference(n_cpus=n_cpus)
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the main fit's notes already carry PyDESeq2's warnings
        full = DeseqDataSet(
            counts=frame, metadata=metadata, design=formula, refit_cooks=True,
            inference=inference, quiet=True,
        )  # fmt: skip
        # the first four steps of DeseqDataSet.deseq2(), as it calls them
        full.fit_size_factors(fit_type=full.size_factors_fit_type, control_genes=full.control_genes)
        full.fit_genewise_dispersions()
        full.fit_dispersion_trend()
        full.fit_dispersion_prior()
        sub = DeseqDataSet(
            counts=frame[targets.astype(str)], metadata=metadata, design=formula,
            refit_cooks=True, inference=inference, quiet=True,
        )  # fmt: skip
        # what _refit_without_outliers carries over, and how it sets the normalised counts
        sub.obs["size_factors"] = full.obs["size_factors"].to_numpy()
        sub.layers["normed_counts"] = sub.X / sub.obs["size_factors"].to_numpy()[:, None]
        sub.var["_normed_means"] = sub.layers["normed_counts"].mean(axis=0)
        for key in ("disp_function_type", "trend_coeffs", "mean_disp"):
            if key in full.uns:
                sub.uns[key] = full.uns[key]
        sub.fit_genewise_dispersions()
        sub.var["fitted_dispersions"] = sub.disp_function(sub.var["_normed_means"])
        sub.uns["_squared_logres"] = full.uns["_squared_logres"]
        sub.uns["prior_disp_var"] = full.uns["prior_disp_var"]
        # the rest of DeseqDataSet.deseq2()
        sub.fit_MAP_dispersions()
        sub.fit_LFC()
        sub.calculate_cooks()
        sub.refit()
        sub.cooks_outlier()
        stats = DeseqStats(
            sub, contrast=["condition", contrast[0], contrast[1]], inference=inference,
            quiet=True,
        )  # fmt: skip
        stats.summary()
    return stats.results_df["pvalue"].astype(float).reindex(targets.astype(str))


def _worth_noting(caught: warnings.WarningMessage) -> bool:
    """Library deprecation chatter is not a fact about the data."""
    return not issubclass(caught.category, DeprecationWarning | FutureWarning)
