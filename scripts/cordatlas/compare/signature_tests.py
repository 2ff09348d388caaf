"""Donor-level tests of signature scores, cord vs adult, read against the literature and beside a sample-handling control."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from cordatlas.checks import check_contrast, require_columns
from cordatlas.compare.contamination import (
    AMBIENT,
    CONTAMINATION_FLAG,
    CONTAMINATION_SOURCE,
    set_contamination_flags,
)
from cordatlas.compare.donor_stats import (
    adjust_by_family,
    compare_groups,
    design_matrix,
    ols_condition,
    usable_covariates,
    welch_t,
)
from cordatlas.compare.signatures import SUMMARY_COLUMNS
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import expectation_for, library_sets, set_metadata
from cordatlas.params import ComparisonParams, Contrast
from cordatlas.vocabulary import (
    DONOR_LEVEL,
    EVIDENCE,
    LOW_POWER,
    NOT_TESTABLE,
    NOTE,
    check_evidence,
    format_pvalue,
)

if TYPE_CHECKING:
    import anndata as ad

log = logging.getLogger(__name__)

#: Default name of the control set shown beside each biological contrast.
DEFAULT_CONTROL = "stress_processing_delay"

#: Values of the ``test`` column, and how the note names them.
TESTS = {"student_t": "Student's t", "welch_t": "Welch's t", "linear_model_t": "linear-model t"}

#: Columns of the model adjusted for the donors' control score (see :func:`signature_tests`).
ADJUSTED_COLUMNS = [
    "difference_adjusted",
    "se_adjusted",
    "ci_low_adjusted",
    "ci_high_adjusted",
    "df_adjusted",
    "pvalue_adjusted",
]

#: Columns of :func:`signature_tests`' result.
RESULT_COLUMNS = [
    "cell_type",
    "signature",
    "category",
    "role",
    "expected_direction",
    "observed_direction",
    "concordance",
    "n_condition",
    "n_reference",
    "mean_condition",
    "mean_reference",
    "difference",
    "se",
    "ci_low",
    "ci_high",
    "t",
    "df",
    "test",
    "pvalue",
    "family",
    "padj",
    "padj_all",
    LOW_POWER,
    "covariates",
    "control_difference",
    "control_pvalue",
    "control_padj",
    "control_flag",
    *ADJUSTED_COLUMNS,
    "loo_max_pvalue",
    "loo_weakest_donor",
    "survives_leave_one_out",
    CONTAMINATION_FLAG,
    CONTAMINATION_SOURCE,
    EVIDENCE,
    NOTE,
    "citations",
]


def read_set_genes(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Each scored signature's genes from the scoring's gene table (``genes_used``)."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    require_columns(
        table.columns,
        ["signature", "genes_used"],
        table=str(path),
        fix="rerun score_signatures, which writes it.",
    )
    return {
        str(name): [g for g in str(genes).split(",") if g]
        for name, genes in zip(table["signature"], table["genes_used"], strict=True)
    }


def signature_tests(
    summary: pd.DataFrame,
    design: pd.DataFrame,
    library: Mapping[str, Any],
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    control_flag_pvalue: float,
    control_flag_difference: float,
    condition_key: str = "condition",
    control: str | None = DEFAULT_CONTROL,
    pseudobulk: ad.AnnData | None = None,
    set_genes: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Test each signature in each cell type, condition vs reference, donors as the unit.

    Per cell type, the replicate means of every signature (from
    :func:`cordatlas.compare.signatures.summarise_by_replicate`) are compared between the
    conditions (difference = condition - reference) with one of three tests, named in ``test``:

    - ``linear_model_t``: intercept + condition + covariates by OLS
      (`donor_stats.compare_groups`) when a covariate is used;
    - ``welch_t``: Welch's unequal-variance t when no covariate is used and the groups differ in
      size (the pooled-variance t is anti-conservative exactly when the smaller group varies
      more, and with 2-4 donors a side nobody can check that it does not);
    - ``student_t``: the pooled-variance t for balanced groups without covariates (equal sizes
      make it robust to unequal variances, and its df are exact).

    Every tested row has the difference's 95 % CI (``ci_low``, ``ci_high``) and ``low_power``
    (the smaller group has at most ``comparison.low_power_max_replicates`` donors).

    Benjamini-Hochberg adjustment runs within two families (``family``): ``prespecified``, the
    rows the library states an expectation for in that cell type (a direction or
    ``conflicting``), and ``exploratory``, all others (the control included). ``padj`` is within
    the family; ``padj_all`` over every test, for reference.

    Each row is compared with the library's expectation where the set's ``cell_types``
    include the cell type (or are null):

    - ``agree``: padj < alpha and the difference has the expected sign;
    - ``disagree``: padj < alpha and the opposite sign;
    - ``not_significant``: an expectation but padj >= alpha;
    - ``contested``: the literature conflicts (``expected_direction: conflicting``); the
      observed direction and padj are reported, not scored;
    - ``no_expectation``: no claim for this set in this cell type;
    - ``not_testable``: fewer than the minimum replicates in a group (or no residual
      degrees of freedom), so no p-value.

    The control set in the same cell type sits on every row: ``control_difference``,
    ``control_pvalue``, ``control_padj`` and ``control_flag`` (a liberal screen, not a test: its
    raw p-value below `control_flag_pvalue` or its absolute difference at least
    `control_flag_difference`, the latter also where the control is not testable). Each biological row is refitted with
    the donors' control score as a covariate (:data:`ADJUSTED_COLUMNS`, NaN with the reason in
    ``note`` where too few donors leave no residual df). Each row significant in its family is
    re-tested leaving out each donor in turn (same test rule): ``loo_max_pvalue`` (the largest
    p), ``loo_weakest_donor`` (whose removal gave it) and ``survives_leave_one_out`` (every
    leave-one-out p < alpha; False when leaving a donor out makes the row untestable; empty
    for rows not significant).

    ``contamination_flag`` / ``contamination_source``: whether another cell type or the ambient
    RNA can explain the set's level and its difference in this cell type
    (:func:`cordatlas.compare.contamination.set_contamination_flags` on the set's summed counts
    per donor, the DE genes' rule; config ``comparison.contamination_max_fraction`` and
    ``contamination_min_explained``); NA where no pseudobulks were given or the cell type has
    none. A flagged row's note says so: ambient globins make fetal haemoglobin "higher in cord"
    in every cell type of a soup-rich cord sample.

    Parameters
    ----------
    summary
        Long table from `summarise_by_replicate`.
    design
        Replicates (index) x `condition_key` and the covariates (`donor_stats.replicate_table`).
    library
        The library the scores came from (expectations, categories, citations).
    comparison
        config ``comparison``: ``covariates``, ``min_replicates_per_group``, ``alpha`` (on padj
        for the concordance call and on the leave-one-out p-values),
        ``low_power_max_replicates``.
    contrast
        (condition, reference), e.g. cord_blood vs adult.
    control_flag_pvalue, control_flag_difference
        config ``signatures.control_flag_pvalue`` and ``signatures.control_flag_difference``.
    control
        Name of the control set; None for no control columns.
    pseudobulk, set_genes
        All cell types' pseudobulks (:func:`cordatlas.compare.pseudobulk.aggregate_pseudobulk`)
        and each signature's scored genes (``genes_used`` of the scoring's gene table), for the
        contamination columns; None leaves them NA.

    Returns
    -------
    pd.DataFrame
        :data:`RESULT_COLUMNS`, one row per cell type x signature, cell types in `summary`
        order. ``evidence`` is ``donor_level`` where tested and ``not_testable`` otherwise;
        ``note`` is one sentence a reader can quote.
    """
    pair = check_contrast(contrast.as_tuple())
    if summary.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    _check_inputs(summary, design, pair, condition_key=condition_key)
    if control is not None and control not in set(summary["signature"]):
        log.warning(
            "control set %r is not among the scored signatures; control columns are empty",
            control,
        )
    design = design.copy()
    design.index = design.index.astype(str)
    design = design.loc[design[condition_key].astype(str).isin(pair)]
    sets = library_sets(library)
    entries = {
        name: sets.get(name) or set_metadata(library, name)
        for name in dict.fromkeys(summary["signature"])
    }
    values = {
        cell_type: _values(summary, cell_type) for cell_type in dict.fromkeys(summary["cell_type"])
    }
    options = {"comparison": comparison, "contrast": pair, "condition_key": condition_key}
    frames = []
    for cell_type, table in values.items():
        result = feature_tests(table, design, **options)
        result = result.join(_adjusted(table, design, result, control=control, **options))
        result.insert(0, "cell_type", cell_type)
        frames.append(result)
    table = pd.concat(frames, ignore_index=True).rename(columns={"feature": "signature"})
    table["expected_direction"] = [
        expectation_for(entries[s], c)
        for s, c in zip(table["signature"], table["cell_type"], strict=True)
    ]
    table = _adjust_by_family(table)
    table = _leave_one_out(table, values, design, **options)
    table = _contamination(
        table, values, design, pseudobulk, set_genes, comparison=comparison, contrast=pair,
        condition_key=condition_key,
    )  # fmt: skip
    smaller = table[["n_condition", "n_reference"]].min(axis=1)
    table[LOW_POWER] = table["pvalue"].notna() & (smaller <= comparison.low_power_max_replicates)
    flag = (control_flag_pvalue, control_flag_difference)
    return _finish(table, entries, pair, control, flag, alpha=comparison.alpha)


def _finish(
    table: pd.DataFrame,
    entries: Mapping[str, Mapping[str, Any]],
    contrast: tuple[str, str],
    control: str | None,
    flag: tuple[float, float],
    *,
    alpha: float,
) -> pd.DataFrame:
    """The library's metadata, concordance, control columns, evidence and note on each row."""
    controls = (
        table[table["signature"] == control].set_index("cell_type")
        if control is not None
        else table.iloc[0:0].set_index("cell_type")
    )
    rows = []
    for row in table.to_dict("records"):
        row.update(_read_row(row, entries[row["signature"]], alpha=alpha))
        row.update(_control_columns(row["cell_type"], controls, flag))
        row[EVIDENCE] = NOT_TESTABLE if row["concordance"] == "not_testable" else DONOR_LEVEL
        row[NOTE] = _note(row, contrast=contrast, control=control, alpha=alpha, flag=flag)
        rows.append(row)
    out = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for column in ("control_flag", "survives_leave_one_out", CONTAMINATION_FLAG):
        out[column] = out[column].astype("boolean")
    check_evidence(out[EVIDENCE], table="signature tests")
    return out


def _check_inputs(
    summary: pd.DataFrame, design: pd.DataFrame, contrast: tuple[str, str], *, condition_key: str
) -> None:
    require_columns(
        summary.columns,
        SUMMARY_COLUMNS,
        table="signature summary",
        fix="pass summarise_by_replicate's table.",
    )
    require_columns(
        design.columns,
        [condition_key],
        table="design",
        fix="build it with donor_stats.replicate_table.",
    )
    levels = set(design[condition_key].astype(str))
    absent = [c for c in contrast if c not in levels]
    if absent:
        raise UserInputError(
            f"contrast level(s) {absent} are not values of {condition_key!r} (found "
            f"{sorted(levels)}); set comparison.contrast to two of them"
        )


def _values(summary: pd.DataFrame, cell_type: str) -> pd.DataFrame:
    """Replicates (index, text) x signatures (summary order): the donors' mean scores."""
    part = summary[summary["cell_type"] == cell_type]
    values = part.pivot(index="replicate", columns="signature", values="mean_score")
    values = values[list(dict.fromkeys(part["signature"]))]
    values.index = values.index.astype(str)
    return values


def feature_tests(
    values: pd.DataFrame,
    design: pd.DataFrame,
    *,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    condition_key: str = "condition",
) -> pd.DataFrame:
    """Each feature's donor-level test by the rule of :func:`signature_tests`, with its 95 % CI.

    `donor_stats.compare_groups` (OLS; Student's t without covariates), then Welch's t in place
    of Student's where no covariate was used and the group sizes differ (each group >= 2).
    Returns compare_groups' columns less ``sigma2``/``stdev_unscaled``, plus ``test``,
    ``ci_low``, ``ci_high``.
    """
    result = compare_groups(
        values,
        design,
        contrast=contrast,
        condition_key=condition_key,
        covariates=comparison.covariates,
        numeric=comparison.numeric_covariates,
        min_replicates=comparison.min_replicates_per_group,
    ).drop(columns=["sigma2", "stdev_unscaled"])
    tested = result["df"].notna().to_numpy()
    plain = (result["covariates"] == "").to_numpy()
    result["test"] = np.where(tested, np.where(plain, "student_t", "linear_model_t"), "")
    unbalanced = (result["n_condition"] != result["n_reference"]).to_numpy()
    condition = design[condition_key].astype(str).reindex(values.index)
    for i in np.flatnonzero(tested & plain & unbalanced):
        column = values.iloc[:, i]
        groups = [column[(condition == level).to_numpy()].dropna() for level in contrast]
        if min(len(g) for g in groups) < 2:
            continue
        fit = welch_t(groups[0].to_numpy(), groups[1].to_numpy())
        for key in ("se", "t", "df", "pvalue"):
            result.iat[i, result.columns.get_loc(key)] = fit[key]
        result.iat[i, result.columns.get_loc("test")] = "welch_t"
    se, df = result["se"].to_numpy(dtype=float), result["df"].to_numpy(dtype=float)
    ok = np.isfinite(se) & np.isfinite(df) & (df > 0)
    half = np.where(ok, stats.t.ppf(0.975, np.where(ok, df, 1.0)) * se, np.nan)
    result["ci_low"] = result["difference"] + np.where(ok, -half, np.nan)
    result["ci_high"] = result["difference"] + half
    return result


def _adjusted(
    values: pd.DataFrame,
    design: pd.DataFrame,
    result: pd.DataFrame,
    *,
    control: str | None,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    condition_key: str,
) -> pd.DataFrame:
    """Each tested biological feature refitted with the donors' control score as a covariate.

    Same donors (those with both scores), same covariates as the row's model, plus the control
    score as a numeric column; OLS t on the condition coefficient. ``adjustment`` says why a
    row has none.
    """
    out = pd.DataFrame(np.nan, index=result.index, columns=ADJUSTED_COLUMNS)
    out["adjustment"] = ""
    if control is None or control not in values.columns:
        return out
    condition = contrast[0]
    score = values[control].reindex(design.index)
    minimum = max(comparison.min_replicates_per_group, 1)
    for i, row in result.iterrows():
        if row["feature"] == control or not np.isfinite(row["pvalue"]):
            continue
        y = values[row["feature"]].reindex(design.index)
        have = (y.notna() & score.notna()).to_numpy()
        sub = design.loc[have]
        is_condition = sub[condition_key].astype(str).to_numpy() == condition
        if min(is_condition.sum(), (~is_condition).sum()) < minimum:
            out.at[i, "adjustment"] = "too few donors have a control score"
            continue
        numeric = comparison.numeric_covariates
        used, _ = usable_covariates(
            sub,
            [c for c in str(row["covariates"]).split(",") if c],
            condition_key=condition_key,
            numeric=numeric,
        )
        x = np.column_stack(
            [design_matrix(sub, condition_key, condition, used, numeric=numeric), score[have]]
        )
        fit = ols_condition(y.to_numpy(dtype=float)[have], x)
        if not np.isfinite(fit["se"]):
            out.at[i, "adjustment"] = (
                f"{len(sub)} donors leave no residual degrees of freedom for the control score"
            )
            continue
        for column in ADJUSTED_COLUMNS:
            out.at[i, column] = fit[column.removesuffix("_adjusted")]
    return out


def _adjust_by_family(table: pd.DataFrame) -> pd.DataFrame:
    """``family`` (pre-specified: the library expects something here) and BH within it."""
    expected = table["expected_direction"]
    prespecified = expected.notna() & ~expected.astype(str).isin(["", "none"])
    family, padj, padj_all = adjust_by_family(table["pvalue"], prespecified.to_numpy())
    table["family"], table["padj"], table["padj_all"] = family, padj, padj_all
    return table


def _leave_one_out(
    table: pd.DataFrame,
    values: Mapping[str, pd.DataFrame],
    design: pd.DataFrame,
    *,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    condition_key: str,
) -> pd.DataFrame:
    """Rows significant in their family re-tested without each of their donors in turn."""
    table["loo_max_pvalue"] = np.nan
    table["loo_weakest_donor"] = ""
    table["survives_leave_one_out"] = None
    significant = (table["padj"] < comparison.alpha).to_numpy()
    for cell_type, part in table[significant].groupby("cell_type", sort=False):
        features = list(part["signature"])
        scores = values[cell_type][features].reindex(design.index)
        pvalues = pd.DataFrame(np.nan, index=design.index, columns=features)
        for donor in design.index:
            left = scores.copy()
            left.loc[donor] = np.nan
            fit = feature_tests(
                left, design, comparison=comparison, contrast=contrast, condition_key=condition_key
            )
            pvalues.loc[donor] = fit["pvalue"].to_numpy(dtype=float)
        for index, feature in zip(part.index, features, strict=True):
            p = pvalues.loc[scores[feature].notna(), feature]
            untestable = p.index[p.isna()]
            if len(untestable):
                table.at[index, "loo_weakest_donor"] = str(untestable[0])
                table.at[index, "survives_leave_one_out"] = False
                continue
            table.at[index, "loo_max_pvalue"] = float(p.max())
            table.at[index, "loo_weakest_donor"] = str(p.idxmax())
            table.at[index, "survives_leave_one_out"] = bool((p < comparison.alpha).all())
    return table


def _contamination(
    table: pd.DataFrame,
    values: Mapping[str, pd.DataFrame],
    design: pd.DataFrame,
    pseudobulk: ad.AnnData | None,
    set_genes: Mapping[str, Sequence[str]] | None,
    *,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    condition_key: str,
) -> pd.DataFrame:
    """The contamination columns: each row's set checked on its cell type's donors."""
    table[CONTAMINATION_FLAG] = None
    table[CONTAMINATION_SOURCE] = ""
    if pseudobulk is None or set_genes is None:
        return table
    present = set(pseudobulk.obs[comparison.cell_type_key].astype(str))
    for cell_type, part in table.groupby("cell_type", sort=False):
        if cell_type not in present:
            continue
        donors = [d for d in values[cell_type].index if d in design.index]
        sets = {s: list(set_genes.get(s, ())) for s in part["signature"]}
        flags = set_contamination_flags(
            pseudobulk,
            sets,
            dict(zip(part["signature"], part["difference"].astype(float), strict=True)),
            cell_type=cell_type,
            donors=donors,
            is_condition=design.loc[donors, condition_key].astype(str).to_numpy() == contrast[0],
            cell_type_key=comparison.cell_type_key,
            replicate_key=comparison.replicate_key,
            max_fraction=comparison.contamination_max_fraction,
            min_explained=comparison.contamination_min_explained,
        ).set_index("signature")
        for index, signature in zip(part.index, part["signature"], strict=True):
            table.at[index, CONTAMINATION_FLAG] = bool(flags.at[signature, CONTAMINATION_FLAG])
            table.at[index, CONTAMINATION_SOURCE] = flags.at[signature, CONTAMINATION_SOURCE]
    return table


def _direction(value: float) -> str:
    if value is None or not np.isfinite(value) or value == 0:
        return "none"
    return "up" if value > 0 else "down"


def _read_row(row: Mapping[str, Any], entry: Mapping[str, Any], *, alpha: float) -> dict[str, Any]:
    """The library's metadata, the observed direction and the concordance with the expectation."""
    expected = row["expected_direction"]
    observed = _direction(row["difference"])
    testable = np.isfinite(row["pvalue"]) if row["pvalue"] is not None else False
    significant = bool(testable and row["padj"] < alpha)
    if not testable:
        concordance = "not_testable"
    elif expected is None:
        concordance = "no_expectation"
    elif expected == "conflicting":
        concordance = "contested"
    elif not significant:
        concordance = "not_significant"
    else:
        concordance = "agree" if observed == expected else "disagree"
    return {
        "category": entry["category"],
        "role": entry["role"],
        "observed_direction": observed,
        "concordance": concordance,
        "citations": "; ".join(entry.get("citations", [])),
    }


def _control_columns(
    cell_type: str, controls: pd.DataFrame, flag: tuple[float, float]
) -> dict[str, Any]:
    """The control set's difference, p, padj and flag in this cell type (NaN/None: no control)."""
    empty = {"control_difference": np.nan, "control_pvalue": np.nan, "control_padj": np.nan}
    if cell_type not in controls.index:
        return empty | {"control_flag": None}
    ctrl = controls.loc[cell_type]
    pvalue, difference = float(ctrl["pvalue"]), float(ctrl["difference"])
    if not np.isfinite(difference):
        return empty | {"control_flag": None}
    fires = (np.isfinite(pvalue) and pvalue < flag[0]) or abs(difference) >= flag[1]
    return {
        "control_difference": difference,
        "control_pvalue": pvalue,
        "control_padj": float(ctrl["padj"]),
        "control_flag": bool(fires),
    }


def _note(
    row: Mapping[str, Any],
    *,
    contrast: tuple[str, str],
    control: str | None,
    alpha: float,
    flag: tuple[float, float],
) -> str:
    """One sentence a reader can quote: the numbers, the expectation, the control, robustness."""
    condition, reference = contrast
    if row["concordance"] == "not_testable":
        parts = [
            f"not testable: {int(row['n_condition'])} {condition} and {int(row['n_reference'])} "
            f"{reference} replicates with enough cells"
        ]
    else:
        parts = [
            f"{condition} {row['mean_condition']:.3g} vs {reference} {row['mean_reference']:.3g} "
            f"(difference {row['difference']:+.3g}, 95 % CI {row['ci_low']:+.3g} to "
            f"{row['ci_high']:+.3g}, {TESTS.get(row['test'], row['test'])} p "
            f"{format_pvalue(row['pvalue'])}, padj {format_pvalue(row['padj'])} among the "
            f"{row['family']} tests, {int(row['n_condition'])} vs {int(row['n_reference'])} "
            "replicates)"
        ]
        if row[LOW_POWER]:
            parts.append("low power: few donors in the smaller group")
    expected = row["expected_direction"]
    if expected is None:
        parts.append("no published expectation in this cell type")
    elif expected == "conflicting":
        parts.append(
            f"published sources conflict (see notes); the data point {row['observed_direction']}"
        )
    else:
        parts.append(f"expected {expected} -> {row['concordance']}")
    if control is not None and row["signature"] != control:
        parts.extend(_control_note(row, control=control, flag=flag))
    if row["survives_leave_one_out"] is not None:
        parts.append(_robustness_note(row, alpha=alpha))
    if isinstance(row[CONTAMINATION_FLAG], bool | np.bool_) and row[CONTAMINATION_FLAG]:
        source = row[CONTAMINATION_SOURCE]
        what = "the ambient RNA" if source == AMBIENT else f"{source} cells"
        parts.append(
            f"caution: contamination_flag: {what} can explain this set's level and difference "
            "here (leaked transcripts, not this cell type's own expression)"
        )
    return "; ".join(parts)


def _control_note(row: Mapping[str, Any], *, control: str, flag: tuple[float, float]) -> list[str]:
    """The control beside the row, its caution, and the effect adjusted for it."""
    if not np.isfinite(row["control_difference"]):
        return [f"{control} control not available in this cell type"]
    parts = [
        f"{control} control here: difference {row['control_difference']:+.3g}, p "
        f"{format_pvalue(row['control_pvalue'])}, padj {format_pvalue(row['control_padj'])}"
    ]
    if row["control_flag"]:
        pvalue = row["control_pvalue"]
        rule = (
            f"raw p < {flag[0]:g}"
            if np.isfinite(pvalue) and pvalue < flag[0]
            else f"|difference| >= {flag[1]:g}"
        )
        parts.append(f"caution: the sample-handling control differs in this cell type ({rule})")
    if np.isfinite(row["pvalue_adjusted"]):
        parts.append(
            f"adjusted for the donors' control score: difference "
            f"{row['difference_adjusted']:+.3g} (95 % CI {row['ci_low_adjusted']:+.3g} to "
            f"{row['ci_high_adjusted']:+.3g}, p {format_pvalue(row['pvalue_adjusted'])})"
        )
    elif row["adjustment"]:
        parts.append(f"not adjusted for the control score: {row['adjustment']}")
    return parts


def _robustness_note(row: Mapping[str, Any], *, alpha: float) -> str:
    """Leave-one-donor-out, in words."""
    if row["survives_leave_one_out"]:
        return (
            f"survives leaving out each donor in turn (largest p {format_pvalue(row['loo_max_pvalue'])}"
            f", without {row['loo_weakest_donor']})"
        )
    if not np.isfinite(row["loo_max_pvalue"]):
        return f"fragile: not testable without donor {row['loo_weakest_donor']}"
    return (
        f"fragile: p {format_pvalue(row['loo_max_pvalue'])} >= {alpha:g} without donor "
        f"{row['loo_weakest_donor']}"
    )
