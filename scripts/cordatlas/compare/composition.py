"""Cell-type composition per donor and its donor-level cord-vs-adult test (propeller: transformed proportions, limma's moderated t)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cordatlas.checks import check_contrast, require_columns
from cordatlas.compare.donor_stats import (
    adjust_by_family,
    compare_groups,
    moderate,
    replicate_table,
)
from cordatlas.errors import UserInputError
from cordatlas.params import ComparisonParams, Contrast
from cordatlas.vocabulary import (
    DONOR_LEVEL,
    EVIDENCE,
    LOW_POWER,
    NOT_TESTABLE,
    NOTE,
    check_evidence,
)

log = logging.getLogger(__name__)

#: Transformations of a replicate's proportion before the linear model.
TRANSFORMS = ("logit", "asin")

#: Columns of :func:`composition_tests`' result.
COMPOSITION_COLUMNS = [
    "cell_type",
    "n_condition",
    "n_reference",
    "mean_proportion_condition",
    "mean_proportion_reference",
    "difference",
    "ci_low",
    "ci_high",
    "log2_ratio",
    "log2_ratio_ci_low",
    "log2_ratio_ci_high",
    "se",
    "t",
    "df",
    "df_prior",
    "pvalue",
    "padj",
    "family",
    "padj_all",
    "transform",
    "method",
    "covariates",
    "loo_max_pvalue",
    "loo_weakest_donor",
    "survives_leave_one_out",
    LOW_POWER,
    EVIDENCE,
    NOTE,
    "presence",
]

#: Value of the ``method`` column.
METHOD = "propeller_moderated_t"


def replicate_proportions(
    obs: pd.DataFrame,
    comparison: ComparisonParams,
    *,
    condition_key: str = "condition",
) -> pd.DataFrame:
    """Cell counts and proportions of every cell type in every replicate (donor), zeros included.

    Labels in ``comparison.exclude_cell_types`` (e.g. ``unassigned`` clusters) are dropped from
    both the numerator and the denominator: proportions are of the labelled cells, so they sum
    to one per replicate, and a donor with more unlabelled cells does not look depleted of
    every type. The cell types are the labels seen in at least one replicate (a categorical's
    unused categories are not cell types of these data); their order is the categorical order,
    else alphabetical.

    Parameters
    ----------
    obs
        One row per cell (after QC) with the config's ``cell_type_key`` and
        ``replicate_key``, and `condition_key`.
    comparison
        config ``comparison``: ``cell_type_key`` (the annotation column), ``replicate_key``
        (the unit of replication), ``exclude_cell_types`` (labels left out of counts and
        totals).
    condition_key
        Column holding each replicate's condition (constant within a replicate).

    Returns
    -------
    DataFrame
        Long table, one row per replicate x cell type: the replicate key, `condition_key`,
        ``cell_type``, ``n_cells``, ``n_total`` (the replicate's cells with a kept label),
        ``proportion`` (``n_cells / n_total``; NaN when the replicate has no kept cell).

    Raises
    ------
    UserInputError
        A column is missing, a cell has no label, or a replicate has two conditions.
    """
    cell_type_key, replicate_key = comparison.cell_type_key, comparison.replicate_key
    exclude = comparison.exclude_cell_types
    if cell_type_key not in obs.columns:
        raise UserInputError(
            f"cell-type column {cell_type_key!r} is not in the data (available: "
            f"{sorted(map(str, obs.columns))}); set comparison.cell_type_key to the annotation "
            "column."
        )
    design = replicate_table(obs, replicate_key=replicate_key, condition_key=condition_key)
    labels = obs[cell_type_key]
    if labels.isna().any():
        raise UserInputError(
            f"{int(labels.isna().sum())} cells have no {cell_type_key!r} label; give them a "
            "label (e.g. 'unassigned') and list it in comparison.exclude_cell_types."
        )
    if isinstance(labels.dtype, pd.CategoricalDtype):
        order = [str(c) for c in labels.cat.categories]
    else:
        order = sorted(labels.astype(str).unique())
    labels = labels.astype(str)
    excluded = {str(e) for e in exclude}
    keep = ~labels.isin(excluded).to_numpy()
    replicates = obs[replicate_key].astype(str)
    counts = pd.crosstab(replicates[keep], labels[keep])
    types = [t for t in order if t in counts.columns and t not in excluded]
    counts = counts.reindex(index=design.index, columns=types, fill_value=0)
    totals = counts.sum(axis=1)
    empty = totals.index[totals == 0].tolist()
    if empty:
        log.warning(
            "%s %s: no cells with a kept %s label (excluded: %s); proportions are NaN",
            replicate_key,
            ", ".join(empty),
            cell_type_key,
            sorted(excluded),
        )
    table = counts.stack().rename("n_cells").reset_index()
    table.columns = [replicate_key, "cell_type", "n_cells"]
    table["n_cells"] = table["n_cells"].astype(int)
    table.insert(1, condition_key, table[replicate_key].map(design[condition_key]))
    table["n_total"] = table[replicate_key].map(totals).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["proportion"] = np.where(
            table["n_total"] > 0, table["n_cells"] / table["n_total"].clip(lower=1), np.nan
        )
    return table.reset_index(drop=True)


def _check_transform(transform: str) -> None:
    if transform not in TRANSFORMS:
        raise UserInputError(
            f"composition transform {transform!r} is not one of {', '.join(TRANSFORMS)}; "
            "set the composition transform in the config to one of them."
        )


def transform_proportions(
    n_cells: np.ndarray | pd.Series,
    n_total: np.ndarray | pd.Series,
    *,
    n_types: int,
    transform: str = "logit",
) -> np.ndarray:
    """Variance-stabilising transform of proportions before a linear model, as propeller does.

    ``logit``: log odds of ``(n + 0.5) / (total + 0.5 * n_types)``: half a cell is added to
    every cell type of the replicate and the proportion taken of the new total, exactly as
    speckle's ``getTransformedProps`` computes ``(tab + 0.5) / rowSums(tab + 0.5)`` (Phipson et
    al. 2022, Bioinformatics 38:4720); the half-counts keep zeros finite and the pseudo
    proportions of a replicate still sum to one. ``asin``: ``arcsin(sqrt(n / total))``, the
    classical variance-stabilising transform of a binomial proportion (no pseudocount, as in
    speckle). NaN where ``total`` is 0.

    Parameters
    ----------
    n_cells, n_total
        A replicate's cells of the type and its cells of every kept type.
    n_types
        Number of cell types the replicate's cells are shared among (the pseudocount's total).
    transform
        ``logit`` or ``asin``.
    """
    _check_transform(transform)
    n = np.asarray(n_cells, dtype=float)
    total = np.asarray(n_total, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if transform == "logit":
            p = (n + 0.5) / (total + 0.5 * n_types)
            out = np.log(p / (1.0 - p))
        else:
            out = np.arcsin(np.sqrt(n / total))
    return np.where(total > 0, out, np.nan)


def inverse_transform(values: np.ndarray | pd.Series, *, transform: str) -> np.ndarray:
    """Proportion of a value on the transformed scale: inverse logit, or sin^2 (clipped to [0, pi/2])."""
    _check_transform(transform)
    x = np.asarray(values, dtype=float)
    if transform == "logit":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))
    return np.sin(np.clip(x, 0.0, np.pi / 2)) ** 2


@dataclass(frozen=True)
class _Groups:
    """Per replicate x cell type: transformed proportion, proportion and cells (replicates of
    the contrast only), and which replicates are the condition's."""

    transformed: pd.DataFrame
    proportion: pd.DataFrame
    n_cells: pd.DataFrame
    is_condition: pd.Series


def composition_tests(
    proportions: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    condition_key: str = "condition",
    prespecified: Collection[str] = (),
) -> pd.DataFrame:
    """Test each cell type's proportion between conditions with replicates (donors) as the unit: propeller.

    propeller (Phipson et al. 2022, Bioinformatics 38:4720; speckle's ``propeller.ttest``), step
    by step: each replicate's proportions are transformed (:func:`transform_proportions`, with
    speckle's half-cell pseudocount for ``logit``); per cell type a linear model intercept +
    condition + covariates is fitted by least squares
    (:func:`cordatlas.compare.donor_stats.compare_groups`); the residual variances of all cell
    types are squeezed towards a common prior by limma's empirical Bayes and the condition
    coefficient gets a moderated t (:func:`cordatlas.compare.donor_stats.moderate`; Smyth 2004,
    Stat Appl Genet Mol Biol 3:3); Benjamini-Hochberg adjusts across the tested cell types
    within each ``family`` (``prespecified``: the cell types in `prespecified`, whose shift the
    literature expects; ``exploratory``: the rest), ``padj_all`` across all of them. Each cell
    type significant in its family is re-tested leaving out each replicate in turn (the whole
    moderated fit redone): ``loo_max_pvalue``, ``loo_weakest_donor`` and
    ``survives_leave_one_out`` as in :func:`cordatlas.compare.signature_tests.signature_tests`
    (False where a re-test is not possible; empty for rows not significant). With
    ``comparison.composition_trend`` the prior variance follows each type's mean transformed
    proportion (propeller's ``trend = TRUE``): on the logit scale a rare type's proportion varies
    more (about 1 / (p (1 - p)) under beta-binomial sampling), and one common prior shrinks the
    rare types' variances too far (simulated null, 4 vs 4 donors: 10 % of p < 0.05 for a 2 %
    type without the trend, 4.8 % with it). One difference from speckle's default: the prior is
    fitted without its ``robust`` option (limma's ``fitFDistRobustly``), i.e. ``propeller(robust
    = FALSE)``. A cell-level test (chi-square on pooled cells) would count cells as replicates and
    ignore the donor-to-donor variation of composition.

    The effect is one quantity: ``difference``, condition - reference on the transformed scale
    (adjusted for the covariates), with its moderated-t 95 % interval (``ci_low``, ``ci_high``).
    ``log2_ratio`` is the same effect back-transformed: log2 of the proportion at the condition's
    mean transformed value (reference mean + difference) over the proportion at the reference's
    mean transformed value, with the interval's ends back-transformed the same way
    (``log2_ratio_ci_*``). It therefore always has the sign of ``difference``. The plain means
    of the replicates' proportions are shown for reading (``mean_proportion_*``) but are not the
    tested quantity: their ratio can point the other way when one donor's share is extreme.

    Limits. Proportions are compositional: one type expanding pushes every other type's share
    down, so a change in one abundant type can appear as small opposite shifts in the rest; read
    the table as shifts in share, not in absolute numbers. With few donors per condition power
    is low (``low_power`` marks rows with at most ``comparison.low_power_max_replicates`` donors
    in a group) and p-values rest on the normality of the transformed proportions. A type absent
    from every replicate of one condition (``presence``) is still tested: the half-count sets
    its floor, so the difference depends on the number of cells per donor.

    Parameters
    ----------
    proportions
        :func:`replicate_proportions` output (columns: the replicate key, ``cell_type``,
        ``n_cells``, ``n_total``, ``proportion``).
    design
        Replicates (index) x `condition_key` and the covariates:
        ``donor_stats.replicate_table(obs, replicate_key=..., columns=covariates)``.
    comparison
        config ``comparison``. ``covariates``: columns of `design` adjusted for; per cell type
        those unusable (constant, aliased with condition, no residual degrees of freedom) are
        left out and ``covariates`` lists those used; ``numeric_covariates`` enter as one
        centred column each (a slope), the others as dummies. ``composition_transform``: ``logit`` or
        ``asin``. ``min_replicates_per_group``: replicates with cells needed in each group for
        a test; with fewer the mean proportions are reported, the statistics are NaN, evidence
        is ``not_testable`` and ``note`` says why. ``composition_trend``, ``low_power_max_replicates``:
        see above.
        ``replicate_key``: as in :func:`replicate_proportions`.
    contrast
        (condition, reference); replicates of other conditions are ignored.
    condition_key
        Column name as in :func:`replicate_proportions`.
    prespecified
        Cell types whose change in share is a pre-specified hypothesis (the gene-set library
        states none today, so every row is exploratory by default).

    Returns
    -------
    DataFrame
        :data:`COMPOSITION_COLUMNS`, one row per cell type. ``se``, ``t``, ``df`` (residual +
        prior df, capped at the pooled residual df) and ``pvalue`` are the moderated ones;
        ``df_prior`` is the prior's df (the same on every row; infinite when the cell types'
        variances spread no more than sampling explains); ``evidence`` is ``donor_level`` or
        ``not_testable``; ``presence`` is ``both``, ``only in <condition>``, ``only in
        <reference>`` or ``in neither``.

    Raises
    ------
    UserInputError
        Bad contrast, missing columns, unknown transform, or replicates absent from `design`.
    """
    pair = check_contrast(contrast.as_tuple())
    _check_transform(comparison.composition_transform)
    props, design = _check_composition_inputs(
        proportions, design, comparison, pair, condition_key=condition_key
    )
    types = list(dict.fromkeys(proportions["cell_type"].astype(str)))
    if not types:
        return pd.DataFrame(columns=COMPOSITION_COLUMNS)
    result, groups = _moderated(props, design, comparison, pair, types, condition_key)
    out = _format_composition(result, groups, comparison, pair, types)
    out["family"], out["padj"], out["padj_all"] = adjust_by_family(
        out["pvalue"], out["cell_type"].isin({str(t) for t in prespecified}).to_numpy()
    )
    out = _leave_one_out(out, props, design, comparison, pair, types, condition_key)
    check_evidence(out[EVIDENCE], table="composition tests")
    is_condition = groups.is_condition
    log.info(
        "composition %s vs %s: %d of %d cell types tested (%s transform, %d vs %d %s); "
        "variance prior s0^2 = %.3g on %.3g df",
        *pair,
        int(result["pvalue"].notna().sum()),
        len(out),
        comparison.composition_transform,
        int(is_condition.sum()),
        int((~is_condition).sum()),
        comparison.replicate_key,
        float(result["s2_prior"].iloc[0]),
        float(result["df_prior"].iloc[0]),
    )
    return out[COMPOSITION_COLUMNS]


def _moderated(
    props: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    types: list[str],
    condition_key: str,
) -> tuple[pd.DataFrame, _Groups]:
    """Per cell type the least-squares fit of the transformed proportions, moderated."""
    groups = _group_values(props, design, comparison, contrast, types, condition_key=condition_key)
    return moderated_fit(groups.transformed, design, comparison, contrast, condition_key), groups


def moderated_fit(
    transformed: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    condition_key: str,
) -> pd.DataFrame:
    """propeller's fit: least squares per cell type (column), then limma's moderated t.

    `transformed` holds replicates (index, as `design`) x cell types of transformed
    proportions; the result has compare_groups' columns with ``cell_type`` for ``feature``.
    """
    fitted = compare_groups(
        transformed,
        design,
        contrast=contrast,
        condition_key=condition_key,
        covariates=comparison.covariates,
        numeric=comparison.numeric_covariates,
        min_replicates=comparison.min_replicates_per_group,
    ).rename(columns={"feature": "cell_type"})
    return moderate(fitted, trend=comparison.composition_trend)


def _leave_one_out(
    out: pd.DataFrame,
    props: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    types: list[str],
    condition_key: str,
) -> pd.DataFrame:
    """Cell types significant in their family re-tested without each replicate in turn."""
    out["loo_max_pvalue"] = np.nan
    out["loo_weakest_donor"] = ""
    out["survives_leave_one_out"] = pd.array([pd.NA] * len(out), dtype="boolean")
    significant = out.index[out["padj"].fillna(1.0).to_numpy() < comparison.alpha]
    if significant.empty:
        return out
    replicate_key = comparison.replicate_key
    pvalues = pd.DataFrame(np.nan, index=design.index, columns=types)
    for donor in design.index:
        keep = design.index != donor
        result, _ = _moderated(
            props.loc[props[replicate_key] != donor], design.loc[keep], comparison, contrast,
            types, condition_key,
        )  # fmt: skip
        pvalues.loc[donor] = result.set_index("cell_type")["pvalue"].reindex(types).to_numpy()
    for index in significant:
        cell_type = out.at[index, "cell_type"]
        p = pvalues[cell_type]
        if p.isna().any():
            out.at[index, "loo_weakest_donor"] = str(p.index[p.isna()][0])
            out.at[index, "survives_leave_one_out"] = False
            continue
        out.at[index, "loo_max_pvalue"] = float(p.max())
        out.at[index, "loo_weakest_donor"] = str(p.idxmax())
        out.at[index, "survives_leave_one_out"] = bool((p < comparison.alpha).all())
    return out


def _check_composition_inputs(
    proportions: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    *,
    condition_key: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Columns, conditions and replicates checked; both tables cut to the contrast's replicates."""
    replicate_key = comparison.replicate_key
    require_columns(
        proportions.columns,
        [replicate_key, "cell_type", "n_cells", "n_total"],
        table="proportions table",
        fix="build it with replicate_proportions() using the same replicate_key.",
    )
    require_columns(
        design.columns,
        [condition_key, *comparison.covariates],
        table="design",
        fix="build it with replicate_table(obs, columns=covariates) and check "
        "comparison.covariates.",
    )
    design = design.copy()
    design.index = design.index.astype(str)
    levels = set(design[condition_key].astype(str))
    absent = [c for c in contrast if c not in levels]
    if absent:
        raise UserInputError(
            f"condition(s) {absent} of the contrast are not in the design's {condition_key!r} "
            f"(found: {sorted(levels)}); fix contrast or the sample sheet."
        )
    props = proportions.copy()
    props[replicate_key] = props[replicate_key].astype(str)
    props["cell_type"] = props["cell_type"].astype(str)
    unknown = sorted(set(props[replicate_key]) - set(design.index))
    if unknown:
        raise UserInputError(
            f"{replicate_key} {unknown[0]!r} has proportions but no row in the design "
            f"({len(unknown)} such); build both from the same cells."
        )
    design = design.loc[design[condition_key].astype(str).isin(list(contrast))]
    return props.loc[props[replicate_key].isin(design.index)], design


def _group_values(
    props: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    types: list[str],
    *,
    condition_key: str,
) -> _Groups:
    """Replicates x cell types of the transformed proportions, proportions and cell counts."""
    replicate_key = comparison.replicate_key
    props = props.copy()
    props["transformed"] = transform_proportions(
        props["n_cells"],
        props["n_total"],
        n_types=len(types),
        transform=comparison.composition_transform,
    )
    props["proportion"] = np.where(
        props["n_total"] > 0, props["n_cells"] / props["n_total"].clip(lower=1), np.nan
    )

    def wide(column: str) -> pd.DataFrame:
        table = props.pivot(index=replicate_key, columns="cell_type", values=column)
        return table.reindex(index=design.index, columns=types)

    transformed = wide("transformed")
    no_cells = transformed.index[transformed.isna().all(axis=1)].tolist()
    if no_cells:
        log.warning(
            "%s %s: no cells in the proportions table; left out of the composition test",
            replicate_key,
            ", ".join(no_cells),
        )
    return _Groups(
        transformed=transformed,
        proportion=wide("proportion"),
        n_cells=wide("n_cells").fillna(0),
        is_condition=design[condition_key].astype(str) == contrast[0],
    )


def _format_composition(
    result: pd.DataFrame,
    groups: _Groups,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    types: list[str],
) -> pd.DataFrame:
    """The moderated results with mean proportions, the back-transformed ratio, evidence, note, presence."""
    condition, reference = contrast
    is_condition = groups.is_condition
    raw = groups.proportion
    mean_c = raw.loc[is_condition].mean(axis=0).reindex(types).to_numpy(dtype=float)
    mean_r = raw.loc[~is_condition].mean(axis=0).reindex(types).to_numpy(dtype=float)
    in_c = (groups.n_cells.loc[is_condition] > 0).any(axis=0).to_numpy()
    in_r = (groups.n_cells.loc[~is_condition] > 0).any(axis=0).to_numpy()
    presence = np.select(
        [in_c & in_r, in_c, in_r],
        ["both", f"only in {condition}", f"only in {reference}"],
        default="in neither",
    )
    needed = max(comparison.min_replicates_per_group, 1)
    smaller = np.minimum(result["n_condition"], result["n_reference"]).to_numpy()
    tested = result["pvalue"].notna().to_numpy()
    note = np.where(
        tested,
        "",
        np.where(
            smaller >= needed,
            "no residual variance or degrees of freedom",
            f"fewer than {needed} replicates in a group",
        ),
    )
    ratio = _log2_ratios(result, comparison.composition_transform)
    return pd.DataFrame(
        {
            "cell_type": result["cell_type"].astype(str),
            "n_condition": result["n_condition"].astype(int),
            "n_reference": result["n_reference"].astype(int),
            "mean_proportion_condition": mean_c,
            "mean_proportion_reference": mean_r,
            "difference": result["difference"],
            "ci_low": result["ci_low"],
            "ci_high": result["ci_high"],
            **ratio,
            "se": result["se"],
            "t": result["t"],
            "df": result["df"],
            "df_prior": result["df_prior"],
            "pvalue": result["pvalue"],
            "padj": np.nan,
            "transform": comparison.composition_transform,
            "method": METHOD,
            "covariates": result["covariates"],
            LOW_POWER: tested & (smaller <= comparison.low_power_max_replicates),
            EVIDENCE: np.where(tested, DONOR_LEVEL, NOT_TESTABLE),
            NOTE: note,
            "presence": presence,
        }
    )


def _log2_ratios(result: pd.DataFrame, transform: str) -> dict[str, np.ndarray]:
    """log2 of back-transformed (reference mean + effect) over back-transformed reference mean.

    The reference's mean transformed value is the unadjusted mean of its replicates; adding the
    (covariate-adjusted) difference or either end of its interval and back-transforming gives
    ratios with the sign of the difference, since both transforms are increasing. Untested rows
    use the unadjusted difference of transformed means and have no interval.
    """
    base = pd.to_numeric(result["mean_reference"], errors="coerce").to_numpy(dtype=float)
    reference = inverse_transform(base, transform=transform)

    def log2_ratio(column: str) -> np.ndarray:
        shift = pd.to_numeric(result[column], errors="coerce").to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log2(inverse_transform(base + shift, transform=transform) / reference)

    return {
        "log2_ratio": log2_ratio("difference"),
        "log2_ratio_ci_low": log2_ratio("ci_low"),
        "log2_ratio_ci_high": log2_ratio("ci_high"),
    }
