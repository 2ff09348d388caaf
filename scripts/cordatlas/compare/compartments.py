"""Comparisons within lineages: subset shares per donor (e.g. HSPC subsets, naive vs memory T) and signature scores standardised to one compartment mix."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from cordatlas.annotate.panel import LINEAGE_SUFFIX, cell_type_entries
from cordatlas.checks import check_contrast, require_columns
from cordatlas.compare.composition import (
    COMPOSITION_COLUMNS,
    composition_tests,
    replicate_proportions,
)
from cordatlas.compare.donor_stats import adjust_by_family
from cordatlas.compare.signature_tests import feature_tests
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

#: Columns of :func:`subset_composition`' result: the lineage, then composition_tests' columns.
SUBSET_COLUMNS = ["lineage", "n_subtypes", *COMPOSITION_COLUMNS]

#: Values of the ``verdict`` column of :func:`compartment_adjusted`.
EXPLAINED = "explained_by_compartment_mix"
PERSISTS = "persists_within_compartments"
ONLY_ADJUSTED = "only_after_adjustment"
NO_DIFFERENCE = "no_difference"
VERDICTS = (EXPLAINED, PERSISTS, ONLY_ADJUSTED, NO_DIFFERENCE, NOT_TESTABLE)

#: Value of the ``method`` column of :func:`compartment_adjusted`.
ADJUSTED_METHOD = "direct_standardisation_pooled_mix"

#: An adjusted effect below this fraction of the crude one counts as explained by the mix.
EXPLAINED_FRACTION = 0.5

#: Statistics of one donor-level test, suffixed ``_crude`` and ``_adjusted`` in the table.
_EFFECT = ["mean_condition", "mean_reference", "difference", "ci_low", "ci_high", "pvalue", "padj"]

#: Columns of :func:`compartment_adjusted`' result.
ADJUSTED_COLUMNS = [
    "lineage",
    "signature",
    "subtypes_used",
    "subtypes_left_out",
    "donors_left_out",
    "standard_mix",
    "n_condition",
    "n_reference",
    *[f"{c}_crude" for c in _EFFECT],
    *[f"{c}_adjusted" for c in _EFFECT],
    "share_explained_by_mix",
    "verdict",
    "test",
    "covariates",
    "family",
    "method",
    LOW_POWER,
    EVIDENCE,
    NOTE,
]


def lineage_of_labels(panel: Mapping[str, object]) -> dict[str, str]:
    """Each annotation label's lineage: the panel's cell types and the ``{lineage}_lineage`` labels.

    Cell types without a ``lineage`` in the panel are left out (they belong to no compartment).
    """
    out: dict[str, str] = {}
    for name, entry in cell_type_entries(panel).items():
        lineage = entry.get("lineage")
        if lineage:
            out[str(name)] = str(lineage)
            out[f"{lineage}{LINEAGE_SUFFIX}"] = str(lineage)
    return out


def _lineages(labels: Mapping[str, str]) -> dict[str, list[str]]:
    """Lineage -> its subtype labels (panel order), the unresolved ``_lineage`` label excluded."""
    out: dict[str, list[str]] = {}
    for label, lineage in labels.items():
        out.setdefault(lineage, [])
        if label != f"{lineage}{LINEAGE_SUFFIX}":
            out[lineage].append(label)
    return out


def _contrast_obs(
    obs: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    condition_key: str,
) -> pd.DataFrame:
    """Cells of the contrast's donors with a label that is not excluded."""
    require_columns(
        obs.columns,
        [comparison.cell_type_key, comparison.replicate_key, condition_key],
        table="obs",
        fix="pass the atlas' obs (annotation, replicate and condition columns).",
    )
    donors = design.index[design[condition_key].astype(str).isin(contrast)].astype(str)
    keep = obs[comparison.replicate_key].astype(str).isin(donors)
    keep &= ~obs[comparison.cell_type_key].astype(str).isin(set(comparison.exclude_cell_types))
    return obs.loc[keep.to_numpy()]


def subset_composition(
    obs: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    labels: Mapping[str, str],
    condition_key: str = "condition",
) -> pd.DataFrame:
    """Each subtype's share of its lineage's cells per donor, tested with propeller.

    For every lineage with cells (e.g. ``progenitor``: HSC_MPP, lymphoid/myeloid/erythroid
    progenitors, i.e. the HSPC subset proportions, which only exist where progenitors are
    present; ``T``: CD4_naive ... gamma_delta_T) the lineage's cells are the denominator:
    :func:`cordatlas.compare.composition.replicate_proportions` on those cells only, then
    :func:`cordatlas.compare.composition.composition_tests` (transformed proportions, limma's
    moderated t across the lineage's subtypes, covariates chosen by
    ``donor_stats.usable_covariates``, leave-one-out). The cells whose subtype the annotation
    could not resolve (``{lineage}_lineage``) stay in the denominator and get their own row
    (a donor with more unresolved cells would otherwise look enriched in every subtype).
    Within a lineage this is the question the lineage-level tests cannot answer: is the mix of
    compartments different (cord T cells are mostly naive), independent of how many cells of
    the lineage a donor has.

    A lineage with fewer than two subtypes present has no mix to compare: its rows are
    ``not_testable`` with the reason in ``note``. ``padj`` is Benjamini-Hochberg over every
    tested row of the table (one exploratory family: the library states no expected subset
    shift); the leave-one-out columns come from composition_tests' own (per lineage) pass.

    Parameters
    ----------
    obs
        One row per cell: ``comparison.cell_type_key``, ``replicate_key``, `condition_key`.
    design
        Replicates x condition and covariates (``donor_stats.replicate_table``).
    comparison, contrast
        config ``comparison`` and the contrast, as for composition_tests.
    labels
        Annotation label -> lineage (:func:`lineage_of_labels`).

    Returns
    -------
    DataFrame
        :data:`SUBSET_COLUMNS`, lineages in panel order, subtypes in panel order.
    """
    pair = check_contrast(contrast.as_tuple())
    cells = _contrast_obs(obs, design, comparison, pair, condition_key)
    label = cells[comparison.cell_type_key].astype(str)
    frames = []
    for lineage, subtypes in _lineages(labels).items():
        unresolved = f"{lineage}{LINEAGE_SUFFIX}"
        members = [*subtypes, unresolved]
        part = cells.loc[label.isin(members).to_numpy()].copy()
        if part.empty:
            continue
        # panel order, whatever order the atlas' categories have
        present = [m for m in members if (part[comparison.cell_type_key].astype(str) == m).any()]
        part[comparison.cell_type_key] = pd.Categorical(
            part[comparison.cell_type_key].astype(str), categories=present
        )
        n_subtypes = sum(1 for m in present if m != unresolved)
        proportions = replicate_proportions(part, comparison, condition_key=condition_key)
        tests = composition_tests(
            proportions, design, comparison, contrast, condition_key=condition_key
        )
        if n_subtypes < 2:
            tests = _untestable(
                tests,
                f"lineage {lineage} has {n_subtypes} subtype(s) present "
                f"({', '.join(m for m in present if m != unresolved) or 'none'}): no mix to compare",
            )
        unresolved_rows = tests["cell_type"] == unresolved
        tests.loc[unresolved_rows, NOTE] = _join(
            tests.loc[unresolved_rows, NOTE], f"{lineage} cells whose subtype was not resolved"
        )
        tests.insert(0, "n_subtypes", n_subtypes)
        tests.insert(0, "lineage", lineage)
        frames.append(tests)
        log.info("%s: %d cells, %d subtypes present (%s)", lineage, len(part), n_subtypes, present)
    if not frames:
        return pd.DataFrame(columns=SUBSET_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table["family"], table["padj"], table["padj_all"] = adjust_by_family(
        table["pvalue"], np.zeros(len(table), dtype=bool)
    )
    check_evidence(table[EVIDENCE], table="subset composition")
    return table[SUBSET_COLUMNS]


def _join(notes: pd.Series, text: str) -> pd.Series:
    notes = notes.fillna("").astype(str)
    return notes.where(notes == "", notes + "; ") + text


def _untestable(tests: pd.DataFrame, reason: str) -> pd.DataFrame:
    """Every statistic NaN, evidence not_testable, the reason in note."""
    out = tests.copy()
    for column in ("difference", "ci_low", "ci_high", "log2_ratio", "log2_ratio_ci_low",
                   "log2_ratio_ci_high", "se", "t", "df", "pvalue", "padj", "padj_all",
                   "loo_max_pvalue"):  # fmt: skip
        out[column] = np.nan
    out[LOW_POWER] = False
    out[EVIDENCE] = NOT_TESTABLE
    out[NOTE] = reason
    return out


# ============================================================================================
# Signature scores standardised to one compartment mix
# ============================================================================================
def standardised_means(
    scores: pd.DataFrame,
    subtype: pd.Series,
    replicate: pd.Series,
    *,
    subtypes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Crude and directly standardised donor means of each score over the given subtypes.

    Direct standardisation (the epidemiologists' age-standardised rate, with compartments for
    age bands): per donor d and subtype s the mean score m_ds of its cells; the crude mean is
    ``sum_s p_ds m_ds`` with the donor's own shares p_ds among these subtypes (= the plain mean
    over the donor's cells of these subtypes); the standardised mean is ``sum_s W_s m_ds``
    with one standard mix W for every donor, here the pooled mix (all cells of these
    subtypes over all donors given). Two donors then differ in standardised mean only where
    their within-compartment scores differ, never because one has more naive cells.

    Parameters
    ----------
    scores
        Cells x scores.
    subtype, replicate
        Each cell's subtype label and donor (index as `scores`).
    subtypes
        The compartments standardised over; every donor must have cells of each (the caller
        restricts to those).

    Returns
    -------
    crude, standardised
        Donors x scores.
    weights
        W per subtype (sums to one).
    """
    keep = subtype.astype(str).isin(subtypes).to_numpy()
    frame = scores.loc[keep]
    groups = [replicate.astype(str)[keep].to_numpy(), subtype.astype(str)[keep].to_numpy()]
    means = frame.groupby(groups).mean()
    sizes = frame.groupby(groups).size()
    weights = sizes.groupby(level=1).sum().reindex(subtypes)
    weights = weights / weights.sum()
    crude = frame.groupby(groups[0]).mean()
    w = means.index.get_level_values(1).map(weights).to_numpy(dtype=float)
    standardised = means.mul(w, axis=0).groupby(level=0).sum()
    return crude, standardised.reindex(crude.index), weights


def compartment_adjusted(
    scores: pd.DataFrame,
    obs: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: Contrast,
    *,
    labels: Mapping[str, str],
    condition_key: str = "condition",
) -> pd.DataFrame:
    """Each lineage's signature scores cord vs adult, crude and standardised to one compartment mix.

    Cord T cells are mostly naive and naive cells score lower on effector and regulatory
    programmes, so a lineage-level difference can be the mix of compartments rather than a
    difference within any of them. Per lineage with at least two subtypes and per signature,
    each donor's score is taken two ways over the same cells (:func:`standardised_means`):
    crude (the donor's own mix) and directly standardised (the pooled mix of all donors of the
    contrast). Donors with fewer than ``comparison.min_cells_per_replicate`` cells of the lineage
    leave its comparison (``donors_left_out``: e.g. peripheral-blood donors for the
    progenitors). Only the subtypes with at least ``comparison.min_cells_per_replicate`` cells in
    every remaining donor enter (``subtypes_used``; a donor lacking a compartment has no
    mean to weight, and dropping the donor instead would lose replication, ``subtypes_left_out``
    names the others); cells with an unresolved subtype (``{lineage}_lineage``) have no
    compartment and are left out of both. Fewer than two usable subtypes: ``not_testable``.

    Both donor-level values are tested with the signature tests' rule
    (:func:`cordatlas.compare.signature_tests.feature_tests`: OLS with covariates, else
    Welch's t for unequal group sizes, Student's for equal ones), each with its 95 % CI;
    ``padj_crude`` and ``padj_adjusted`` are Benjamini-Hochberg over the table's tested rows
    (one exploratory family). ``share_explained_by_mix`` is ``1 - adjusted / crude`` difference.
    ``verdict``: ``explained_by_compartment_mix`` when the crude difference is significant
    (padj < alpha) and the adjusted one is not or is under half the crude one;
    ``persists_within_compartments`` when both are significant and the adjusted is at least
    half the crude; ``only_after_adjustment`` when only the adjusted one is significant;
    ``no_difference`` otherwise; ``not_testable`` without a test.

    Parameters
    ----------
    scores
        Cells x signatures (``results/signatures/cell_scores.tsv.gz``), index = cell ids of obs.
    obs, design, comparison, contrast, labels, condition_key
        As for :func:`subset_composition`.

    Returns
    -------
    DataFrame
        :data:`ADJUSTED_COLUMNS`, one row per lineage x signature, lineages with cells only.
    """
    pair = check_contrast(contrast.as_tuple())
    cells = _contrast_obs(obs.loc[obs.index.isin(scores.index)], design, comparison, pair,
                          condition_key)  # fmt: skip
    label = cells[comparison.cell_type_key].astype(str)
    donors = cells[comparison.replicate_key].astype(str)
    signatures = [str(c) for c in scores.columns]
    frames = []
    for lineage, subtypes in _lineages(labels).items():
        in_lineage = label.isin(subtypes).to_numpy()
        if not in_lineage.any():
            continue
        counts = pd.crosstab(donors[in_lineage], label[in_lineage])
        counts = counts.reindex(columns=[s for s in subtypes if s in counts.columns])
        present = list(counts.columns)
        wanted = design.index[design[condition_key].astype(str).isin(pair)].astype(str)
        counts = counts.reindex(index=wanted, fill_value=0)
        # a donor without (enough) cells of the lineage has no lineage to compare (progenitors
        # only in bone-marrow or CD34+ samples): it leaves this lineage's comparison
        enough = counts.sum(axis=1) >= comparison.min_cells_per_replicate
        absent, counts = list(counts.index[~enough]), counts.loc[enough]
        used = [s for s in present if (counts[s] >= comparison.min_cells_per_replicate).all()]
        left_out = [s for s in present if s not in used]
        base = {"lineage": lineage, "subtypes_used": ",".join(used),
                "subtypes_left_out": ",".join(left_out),
                "donors_left_out": ",".join(absent)}  # fmt: skip
        if len(present) < 2 or len(used) < 2:
            reason = (
                f"lineage {lineage} has {len(present)} subtype(s) present: no mix to standardise"
                if len(present) < 2
                else f"fewer than 2 subtypes of {lineage} have >= "
                f"{comparison.min_cells_per_replicate} cells in every donor (used: "
                f"{', '.join(used) or 'none'}; left out: {', '.join(left_out)})"
            )
            frames.append(_untestable_rows(base, signatures, reason))
            continue
        sub = cells.index[in_lineage & donors.isin(counts.index).to_numpy()]
        crude, standard, weights = standardised_means(
            scores.loc[sub], label.loc[sub], donors.loc[sub], subtypes=used
        )
        base["standard_mix"] = ";".join(f"{s}:{w:.3f}" for s, w in weights.items())
        frames.append(_lineage_rows(base, crude, standard, design, comparison, pair,
                                    condition_key))  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=ADJUSTED_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    return _verdicts(table, comparison)


def _untestable_rows(base: dict[str, str], signatures: list[str], reason: str) -> pd.DataFrame:
    rows = [{**base, "signature": s, "standard_mix": "", "verdict": NOT_TESTABLE,
             EVIDENCE: NOT_TESTABLE, NOTE: reason} for s in signatures]  # fmt: skip
    return pd.DataFrame(rows)


def _lineage_rows(
    base: dict[str, str],
    crude: pd.DataFrame,
    standard: pd.DataFrame,
    design: pd.DataFrame,
    comparison: ComparisonParams,
    contrast: tuple[str, str],
    condition_key: str,
) -> pd.DataFrame:
    """The crude and the standardised values tested with the signature tests' rule."""
    options = {"comparison": comparison, "contrast": contrast, "condition_key": condition_key}
    design = design.copy()
    design.index = design.index.astype(str)
    fits = {"crude": feature_tests(crude, design, **options),
            "adjusted": feature_tests(standard, design, **options)}  # fmt: skip
    out = pd.DataFrame({"signature": fits["crude"]["feature"].astype(str)})
    for key, value in base.items():
        out[key] = value
    for name in ("n_condition", "n_reference", "test", "covariates"):
        out[name] = fits["crude"][name].to_numpy()
    for suffix, fit in fits.items():
        for column in _EFFECT[:-1]:
            out[f"{column}_{suffix}"] = fit[column].to_numpy(dtype=float)
    out[EVIDENCE] = np.where(out["pvalue_crude"].notna(), DONOR_LEVEL, NOT_TESTABLE)
    out[NOTE] = np.where(
        out["pvalue_crude"].notna(),
        "",
        f"fewer than {comparison.min_replicates_per_group} donors in a group (or no residual df)",
    )
    return out


def _verdicts(table: pd.DataFrame, comparison: ComparisonParams) -> pd.DataFrame:
    """padj of both tests, the share of the crude difference the mix explains, the verdict."""
    alpha = comparison.alpha
    # lineages without a test have no statistics columns: add them, empty
    table = table.reindex(columns=list(dict.fromkeys([*table.columns, *ADJUSTED_COLUMNS])))
    no_family = np.zeros(len(table), dtype=bool)
    for suffix in ("crude", "adjusted"):
        table["family"], table[f"padj_{suffix}"], _ = adjust_by_family(
            table[f"pvalue_{suffix}"], no_family
        )
    crude = pd.to_numeric(table["difference_crude"], errors="coerce")
    adjusted = pd.to_numeric(table["difference_adjusted"], errors="coerce")
    with np.errstate(divide="ignore", invalid="ignore"):
        table["share_explained_by_mix"] = np.where(crude != 0, 1.0 - adjusted / crude, np.nan)
    crude_sig = table["padj_crude"].fillna(1.0) < alpha
    adjusted_sig = table["padj_adjusted"].fillna(1.0) < alpha
    small = adjusted.abs() < EXPLAINED_FRACTION * crude.abs()
    tested = table["pvalue_crude"].notna()
    table["verdict"] = np.select(
        [~tested, crude_sig & (~adjusted_sig | small), crude_sig, adjusted_sig],
        [NOT_TESTABLE, EXPLAINED, PERSISTS, ONLY_ADJUSTED],
        default=NO_DIFFERENCE,
    )
    n_c = pd.to_numeric(table["n_condition"], errors="coerce")
    n_r = pd.to_numeric(table["n_reference"], errors="coerce")
    table[LOW_POWER] = tested & (np.minimum(n_c, n_r) <= comparison.low_power_max_replicates)
    table["method"] = ADJUSTED_METHOD
    table[NOTE] = table[NOTE].fillna("")
    out = table.reindex(columns=ADJUSTED_COLUMNS)
    for column in ("subtypes_used", "subtypes_left_out", "donors_left_out", "standard_mix",
                   "test", "covariates"):  # fmt: skip
        out[column] = out[column].fillna("")
    check_evidence(out[EVIDENCE], table="compartment-adjusted signatures")
    return out
