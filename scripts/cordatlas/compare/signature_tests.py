"""Donor-level tests of signature scores, cord vs adult, read against the literature and beside a sample-handling control."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cordatlas.checks import check_contrast, require_columns
from cordatlas.compare.donor_stats import bh_adjust, compare_groups
from cordatlas.compare.signatures import SUMMARY_COLUMNS
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import expectation_for, library_sets, set_metadata
from cordatlas.params import ComparisonParams, Contrast
from cordatlas.vocabulary import (
    DONOR_LEVEL,
    EVIDENCE,
    NOT_TESTABLE,
    NOTE,
    check_evidence,
    format_pvalue,
)

log = logging.getLogger(__name__)

#: Default name of the control set shown beside each biological contrast.
DEFAULT_CONTROL = "stress_processing_delay"

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
    "t",
    "df",
    "pvalue",
    "padj",
    "covariates",
    "control_difference",
    "control_padj",
    EVIDENCE,
    NOTE,
    "citations",
]


def signature_tests(
    summary: pd.DataFrame,
    design: pd.DataFrame,
    library: Mapping[str, Any],
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    condition_key: str = "condition",
    control: str | None = DEFAULT_CONTROL,
) -> pd.DataFrame:
    """Test each signature in each cell type, condition vs reference, donors as the unit.

    Per cell type, the replicate means of every signature (from
    :func:`cordatlas.compare.signatures.summarise_by_replicate`) are modelled as intercept +
    condition + covariates with `donor_stats.compare_groups` (OLS t-test; difference =
    condition - reference, adjusted for the covariates). P-values are Benjamini-Hochberg
    adjusted over all signature x cell-type tests together (the control included).

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

    The control set's difference and padj in the same cell type sit on every row
    (``control_difference``, ``control_padj``) so each biological contrast is read beside
    sample handling; ``note`` says it in words and warns when the control differs too.

    Parameters
    ----------
    summary
        Long table from `summarise_by_replicate`.
    design
        Replicates (index) x `condition_key` and the covariates (`donor_stats.replicate_table`).
    library
        The library the scores came from (expectations, categories, citations).
    comparison
        config ``comparison``: ``covariates`` (columns of `design` adjusted for, dropped per
        test where unusable; the ``covariates`` column says which were used),
        ``min_replicates_per_group`` (minimum replicates per group for a test), ``alpha``
        (significance level on padj for the concordance call).
    contrast
        (condition, reference), e.g. cord_blood vs adult.
    control
        Name of the control set; None for no control columns.

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
    table = _test_each_cell_type(summary, design, comparison, pair, condition_key=condition_key)
    controls = (
        table[table["signature"] == control].set_index("cell_type")
        if control is not None
        else table.iloc[0:0].set_index("cell_type")
    )
    sets = library_sets(library)
    rows = []
    for row in table.to_dict("records"):
        entry = sets.get(row["signature"]) or set_metadata(library, row["signature"])
        row.update(_read_row(row, entry, controls, alpha=comparison.alpha))
        row[EVIDENCE] = NOT_TESTABLE if row["concordance"] == "not_testable" else DONOR_LEVEL
        row[NOTE] = _note(row, contrast=pair, control=control, alpha=comparison.alpha)
        rows.append(row)
    out = pd.DataFrame(rows, columns=RESULT_COLUMNS)
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


def _test_each_cell_type(
    summary: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    *,
    condition_key: str,
) -> pd.DataFrame:
    """`compare_groups` per cell type over its signatures; padj over every test together."""
    design = design.copy()
    design.index = design.index.astype(str)
    frames = []
    for cell_type in dict.fromkeys(summary["cell_type"]):
        part = summary[summary["cell_type"] == cell_type]
        values = part.pivot(index="replicate", columns="signature", values="mean_score")
        values = values[list(dict.fromkeys(part["signature"]))]
        values.index = values.index.astype(str)
        result = compare_groups(
            values,
            design,
            contrast=contrast,
            condition_key=condition_key,
            covariates=comparison.covariates,
            min_replicates=comparison.min_replicates_per_group,
        )
        result.insert(0, "cell_type", cell_type)
        frames.append(result)
    table = pd.concat(frames, ignore_index=True).rename(columns={"feature": "signature"})
    table["padj"] = bh_adjust(table["pvalue"].to_numpy(dtype=float))
    return table


def _direction(value: float) -> str:
    if value is None or not np.isfinite(value) or value == 0:
        return "none"
    return "up" if value > 0 else "down"


def _read_row(
    row: Mapping[str, Any], entry: Mapping[str, Any], controls: pd.DataFrame, *, alpha: float
) -> dict[str, Any]:
    """The library's metadata, the expectation and its concordance, the control beside."""
    expected = expectation_for(entry, row["cell_type"])
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
    if row["cell_type"] in controls.index:
        ctrl = controls.loc[row["cell_type"]]
        control_difference, control_padj = float(ctrl["difference"]), float(ctrl["padj"])
    else:
        control_difference, control_padj = np.nan, np.nan
    return {
        "category": entry["category"],
        "role": entry["role"],
        "expected_direction": expected,
        "observed_direction": observed,
        "concordance": concordance,
        "control_difference": control_difference,
        "control_padj": control_padj,
        "citations": "; ".join(entry.get("citations", [])),
    }


def _note(
    row: Mapping[str, Any], *, contrast: tuple[str, str], control: str | None, alpha: float
) -> str:
    """One sentence a reader can quote: the numbers, the expectation, the control beside it."""
    condition, reference = contrast
    parts = []
    if row["concordance"] == "not_testable":
        parts.append(
            f"not testable: {int(row['n_condition'])} {condition} and {int(row['n_reference'])} "
            f"{reference} replicates with enough cells"
        )
    else:
        parts.append(
            f"{condition} {row['mean_condition']:.3g} vs {reference} {row['mean_reference']:.3g} "
            f"(difference {row['difference']:+.3g}, padj {format_pvalue(row['padj'])}, "
            f"{int(row['n_condition'])} vs {int(row['n_reference'])} replicates)"
        )
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
        if np.isfinite(row["control_difference"]):
            parts.append(
                f"{control} control here: difference {row['control_difference']:+.3g}, padj "
                f"{format_pvalue(row['control_padj'])}"
            )
            if np.isfinite(row["control_padj"]) and row["control_padj"] < alpha:
                parts.append("caution: the sample-handling control also differs in this cell type")
        else:
            parts.append(f"{control} control not available in this cell type")
    return "; ".join(parts)
