"""One row per tested claim, read from the results tables: what was tested, what the data say, how far to trust it.

The rows come from the tables the workflow wrote: each composition shift
(``composition/composition_tests.tsv``), each signature in each cell type
(``signatures/signature_tests.tsv``), each cell type's cycling fraction
(``signatures/cycling_tests.tsv``), each cell type's place on the development axis
(``signatures/development_contrast.tsv``), each subtype's share of its lineage
(``compartments/subset_composition.tsv``), each lineage's signature standardised to one subtype mix
(``compartments/compartment_adjusted.tsv``) and each cell type's differential expression in numbers
(``de/de_summary.tsv``, top genes from ``de/de_all.tsv.gz``). Nothing is re-tested. Two things
are read on top of the tables, both stated in the row's ``note``:

- the 95 % confidence interval of a donor-level difference, ``difference +/- t(0.975, df) x se``
  from the table's own ``se`` and ``df`` (the OLS model of ``donor_stats.compare_groups``), unless
  the table already carries ``ci_low`` / ``ci_high``;
- the design check: when ``design/design_findings.tsv`` warns that condition is aliased with a
  factor (study, technology ...), every row's evidence becomes ``confounded`` (vocabulary), the
  table's own label kept in the note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cordatlas.design import aliased_factors, mark_confounded
from cordatlas.vocabulary import (
    CONFOUNDED,
    DONOR_LEVEL,
    EVIDENCE,
    EXPLORATORY,
    NOT_TESTABLE,
    NOTE,
    check_evidence,
    format_pvalue,
)

#: Columns of :func:`build_findings` (and of results/findings.tsv).
FINDINGS_COLUMNS = [
    "kind",
    "cell_type",
    "feature",
    "effect",
    "effect_measure",
    "ci_low",
    "ci_high",
    "padj",
    "n_condition",
    "n_reference",
    EVIDENCE,
    "call",
    "expected",
    "agreement",
    "control",
    "family",
    "leave_one_out",
    NOTE,
    "detail",
]

#: The report page, relative to results/ (the ``detail`` column links into it).
PAGE = "report/index.html"

#: Kinds of claim, in the order the table lists them.
KINDS = (
    "composition",
    "subset_composition",
    "signature",
    "compartment_adjusted",
    "cycling",
    "development",
    "de",
)

#: Top genes (lowest padj) named in a DE row's note.
N_TOP_GENES = 3


def confidence_interval(difference: float, se: float, df: float) -> tuple[float, float]:
    """95 % interval of an OLS difference from its standard error and residual df (NaN if absent)."""
    if not all(np.isfinite(v) for v in (difference, se, df)) or df <= 0:
        return (math.nan, math.nan)
    half = float(stats.t.ppf(0.975, df)) * se
    return (difference - half, difference + half)


def _interval(row: pd.Series) -> tuple[float, float]:
    if "ci_low" in row and "ci_high" in row:
        return (float(row["ci_low"]), float(row["ci_high"]))
    return confidence_interval(
        _num(row.get("difference")), _num(row.get("se")), _num(row.get("df"))
    )


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def call(evidence: str, effect: float, padj: float, *, alpha: float, condition: str) -> str:
    """What the data say, in words a reader can quote, given the row's evidence label."""
    if evidence == NOT_TESTABLE:
        return "not tested"
    if evidence == EXPLORATORY:
        return "ranking only (exploratory)"
    if evidence == CONFOUNDED:
        return "not separable from the confounded factor"
    if not np.isfinite(padj) or padj >= alpha:
        return "no difference detected"
    return f"higher in {condition}" if effect > 0 else f"lower in {condition}"


def composition_findings(
    tests: pd.DataFrame, *, alpha: float, condition: str, reference: str
) -> pd.DataFrame:
    """One row per cell type's share of the labelled cells."""
    rows = []
    for _, row in tests.iterrows():
        low, high = _interval(row)
        transform = str(row.get("transform", "") or "logit")
        note = (
            f"mean proportion {condition} {_num(row['mean_proportion_condition']):.3g} vs "
            f"{reference} {_num(row['mean_proportion_reference']):.3g} (log2 ratio "
            f"{_num(row['log2_ratio']):+.2f})"
        )
        rows.append(
            _row(
                row,
                kind="composition",
                feature="proportion",
                effect=_num(row["difference"]),
                measure=f"{transform} proportion difference ({condition} - {reference})",
                interval=(low, high),
                alpha=alpha,
                condition=condition,
                note=note,
                detail=f"{PAGE}#composition",
            )
        )
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def cycling_findings(
    tests: pd.DataFrame, *, alpha: float, condition: str, reference: str
) -> pd.DataFrame:
    """One row per cell type's fraction of cycling cells (``cycling_tests.tsv``)."""
    rows = []
    for _, row in tests.iterrows():
        transform = str(row.get("transform", "") or "logit")
        means = (
            f"mean cycling fraction {condition} {_num(row['mean_fraction_condition']):.3g} vs "
            f"{reference} {_num(row['mean_fraction_reference']):.3g}"
        )
        note = _measured_note(row, means)
        rows.append(
            _row(
                row,
                kind="cycling",
                feature="cycling_fraction",
                effect=_num(row["difference"]),
                measure=f"{transform} cycling-fraction difference ({condition} - {reference})",
                interval=_interval(row),
                alpha=alpha,
                condition=condition,
                note=note,
                detail=f"{PAGE}#cycling",
            )
        )
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def subset_findings(
    tests: pd.DataFrame, *, alpha: float, condition: str, reference: str
) -> pd.DataFrame:
    """One row per subtype's share of its lineage's cells (``subset_composition.tsv``).

    Lineages with fewer than two subtypes present are left out: the share of a lineage's only
    subtype is no claim (the table keeps those rows, not testable, with the reason).
    """
    rows = []
    for _, row in tests[pd.to_numeric(tests["n_subtypes"], errors="coerce") >= 2].iterrows():
        transform = str(row.get("transform", "") or "logit")
        lineage = str(row["lineage"])
        means = (
            f"share of {lineage} cells: mean {condition} "
            f"{_num(row['mean_proportion_condition']):.3g} vs {reference} "
            f"{_num(row['mean_proportion_reference']):.3g}"
        )
        rows.append(
            _row(
                row,
                kind="subset_composition",
                feature=f"share_of_{lineage}",
                effect=_num(row["difference"]),
                measure=f"{transform} share-of-lineage difference ({condition} - {reference})",
                interval=_interval(row),
                alpha=alpha,
                condition=condition,
                note=_measured_note(row, means),
                detail=f"{PAGE}#compartments",
            )
        )
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def compartment_findings(
    tests: pd.DataFrame, *, alpha: float, condition: str, reference: str
) -> pd.DataFrame:
    """One row per lineage x signature, the compartment-adjusted difference (``compartment_adjusted.tsv``).

    The row's effect, CI and padj are the standardised ones (the comparison at one subtype mix);
    the crude difference, the share the mix explains and the verdict are in the note. Lineages
    with fewer than two subtypes present have no mix to adjust for and are left out (the table
    keeps them, not testable).
    """
    rows = []
    for _, row in tests.iterrows():
        present = [s for c in ("subtypes_used", "subtypes_left_out")
                   for s in ("" if _blank(row.get(c)) else str(row[c])).split(",") if s]  # fmt: skip
        if len(present) < 2:
            continue
        shown = row.copy()
        for column in ("n_condition", "n_reference"):
            shown[column] = 0 if not np.isfinite(_num(row.get(column))) else row[column]
        shown["cell_type"] = str(row["lineage"])
        shown["padj"] = row.get("padj_adjusted")
        verdict = str(row.get("verdict", ""))
        tested = str(row[EVIDENCE]) != NOT_TESTABLE and np.isfinite(_num(row.get("pvalue_crude")))
        if tested:
            own = "" if _blank(row.get(NOTE)) else f"; {row[NOTE]}"
            note = (
                f"{verdict}: crude difference {_num(row['difference_crude']):+.3g} "
                f"(95 % CI {_num(row['ci_low_crude']):+.3g} to {_num(row['ci_high_crude']):+.3g}, "
                f"padj {format_pvalue(_num(row['padj_crude']))}), adjusted "
                f"{_num(row['difference_adjusted']):+.3g}; share explained by the subtype mix "
                f"{_num(row['share_explained_by_mix']):.2f}; standard mix {row['standard_mix']}"
                f"{own}"
            )
        else:
            note = "" if _blank(row.get(NOTE)) else str(row[NOTE])
        rows.append(
            _row(
                shown,
                kind="compartment_adjusted",
                feature=str(row["signature"]),
                effect=_num(row["difference_adjusted"]),
                measure=(
                    f"score difference at one subtype mix ({condition} - {reference}; "
                    "direct standardisation)"
                ),
                interval=(_num(row["ci_low_adjusted"]), _num(row["ci_high_adjusted"])),
                alpha=alpha,
                condition=condition,
                note=note,
                detail=f"{PAGE}#compartments",
            )
        )
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def _measured_note(row: pd.Series, means: str) -> str:
    """The group means then the table's note; a row not tested says only why (no "nan" means)."""
    own = row.get(NOTE)
    if str(row[EVIDENCE]) == NOT_TESTABLE and not _blank(own):
        return str(own)
    return means + ("" if _blank(own) else f"; {own}")


def development_findings(
    contrast: pd.DataFrame, *, alpha: float, condition: str, reference: str
) -> pd.DataFrame:
    """One row per cell type's donor projections on the development axis (``development_contrast.tsv``).

    A cell type the axis could not place (no external reference, too few donors) is a
    ``not_testable`` row whose note says why, as the table does.
    """
    rows = []
    for _, row in contrast.iterrows():
        means = (
            f"mean projection {condition} {_num(row['mean_condition']):.3g} vs {reference} "
            f"{_num(row['mean_reference']):.3g}"
        )
        note = _measured_note(row, means)
        rows.append(
            _row(
                row,
                kind="development",
                feature="development_axis",
                effect=_num(row["difference"]),
                measure=(
                    f"difference of donor projections, adult 0 to fetal 1 ({condition} - "
                    f"{reference})"
                ),
                interval=_interval(row),
                alpha=alpha,
                condition=condition,
                note=note,
                detail=f"{PAGE}#development",
            )
        )
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def control_status(row: pd.Series, *, alpha: float) -> str:
    """The sample-handling control beside a signature contrast, in words."""
    if str(row.get("role", "")) == "control":
        return "this is the control"
    difference, padj = _num(row.get("control_difference")), _num(row.get("control_padj"))
    if "control_flag" in row and not _blank(row.get("control_flag")):
        # the liberal flag (raw p or effect size, config signatures.control_flag_*) and the
        # effect adjusted for the donors' control score
        pvalue = _num(row.get("control_pvalue"))
        if not np.isfinite(difference):
            return "control not available"
        if str(row["control_flag"]).lower() not in ("true", "1"):
            return f"control flat ({difference:+.3g}, p {format_pvalue(pvalue)})"
        adjusted = _num(row.get("difference_adjusted"))
        after = (
            f"; adjusted for it {adjusted:+.3g} (p {format_pvalue(_num(row.get('pvalue_adjusted')))})"
            if np.isfinite(adjusted)
            else "; no adjusted estimate (too few donors)"
        )
        return f"control moves too ({difference:+.3g}, p {format_pvalue(pvalue)}): caution{after}"
    if not np.isfinite(difference):
        return "control not available"
    if np.isfinite(padj) and padj < alpha:
        return f"control differs too ({difference:+.3g}, padj {format_pvalue(padj)}): caution"
    return f"control flat ({difference:+.3g}, padj {format_pvalue(padj)})"


def signature_findings(
    tests: pd.DataFrame, *, alpha: float, condition: str, reference: str
) -> pd.DataFrame:
    """One row per signature x cell type, with the literature's expectation and the control."""
    rows = []
    for _, row in tests.iterrows():
        expected = row.get("expected_direction")
        out = _row(
            row,
            kind="signature",
            feature=str(row["signature"]),
            effect=_num(row["difference"]),
            measure=f"mean score difference ({condition} - {reference})",
            interval=_interval(row),
            alpha=alpha,
            condition=condition,
            note=_signature_note(row),
            detail=f"{PAGE}#sig-{row['signature']}",
        )
        out["expected"] = "" if _blank(expected) else str(expected)
        out["agreement"] = str(row.get("concordance", ""))
        out["control"] = control_status(row, alpha=alpha)
        rows.append(out)
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def _signature_note(row: pd.Series) -> str:
    """The table's note; an older table kept its sentence in ``evidence``."""
    note = row.get(NOTE)
    if not _blank(note):
        return str(note)
    legacy = str(row.get(EVIDENCE, ""))
    return "" if legacy in (DONOR_LEVEL, NOT_TESTABLE) else legacy


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def de_findings(
    summary: pd.DataFrame, genes: pd.DataFrame | None, *, alpha: float, condition: str
) -> pd.DataFrame:
    """One row per cell type: how many genes differ (up, down) and the strongest of them."""
    rows = []
    for _, row in summary.iterrows():
        evidence = str(row[EVIDENCE])
        n_sig, n_up, n_down = (int(row[k]) for k in ("n_significant", "n_up", "n_down"))
        donor_level = evidence == DONOR_LEVEL
        if donor_level:
            said = (
                f"{n_sig} genes differ ({n_up} up, {n_down} down)" if n_sig else "no gene differs"
            )
        else:
            said = call(evidence, math.nan, math.nan, alpha=alpha, condition=condition)
        top = top_genes(genes, str(row["cell_type"]))
        note = f"{int(row['n_genes_tested'])} genes tested"
        flagged = _num(row.get("n_significant_flagged"))
        if donor_level and np.isfinite(flagged) and flagged > 0:
            note += (
                f"; {int(flagged)} of the {n_sig} may come from another cell type or ambient "
                "RNA (contamination_flag)"
            )
        if not donor_level:
            # an exploratory or confounded test's "hits" are a ranking: never counted as findings
            note += f"; {n_sig} rank below padj {alpha:g} ({evidence}: a ranking, not findings)"
        note += f"; strongest: {top}" if top else ""
        plan_note = row.get(NOTE, row.get("reason"))
        note += "" if _blank(plan_note) else f"; {plan_note}"
        rows.append(
            {
                "kind": "de",
                "cell_type": str(row["cell_type"]),
                "feature": "genes",
                "effect": float(n_sig) if donor_level else math.nan,
                "effect_measure": f"genes at padj < {alpha:g}",
                "ci_low": math.nan,
                "ci_high": math.nan,
                "padj": math.nan,
                "n_condition": int(row["n_replicates_condition"]),
                "n_reference": int(row["n_replicates_reference"]),
                EVIDENCE: evidence,
                "call": said,
                "expected": "",
                "agreement": "",
                "control": "",
                NOTE: note,
                "detail": f"{PAGE}#de-{row['slug']}",
            }
        )
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


def top_genes(genes: pd.DataFrame | None, cell_type: str, n: int = N_TOP_GENES) -> str:
    """The `n` genes of lowest padj in one cell type, e.g. ``HBG2 (+3.31, padj 2.3e-47)``."""
    if genes is None or genes.empty:
        return ""
    part = genes[(genes["cell_type"].astype(str) == cell_type) & genes["padj"].notna()]
    part = part.sort_values(["padj", "gene"], kind="mergesort").head(n)
    flagged = (
        part["contamination_flag"].astype(str).str.lower().isin(["true", "1"])
        if "contamination_flag" in part
        else pd.Series(False, index=part.index)
    )
    return ", ".join(
        f"{g} ({fc:+.2f}, padj {format_pvalue(p)}{', possible contamination' if f else ''})"
        for g, fc, p, f in zip(part["gene"], part["log2FC"], part["padj"], flagged, strict=True)
    )


def _row(
    row: pd.Series,
    *,
    kind: str,
    feature: str,
    effect: float,
    measure: str,
    interval: tuple[float, float],
    alpha: float,
    condition: str,
    note: str,
    detail: str,
) -> dict[str, object]:
    evidence = str(row[EVIDENCE])
    padj = _num(row.get("padj"))
    return {
        "kind": kind,
        "cell_type": str(row["cell_type"]),
        "feature": feature,
        "effect": effect,
        "effect_measure": measure,
        "ci_low": interval[0],
        "ci_high": interval[1],
        "padj": padj,
        "n_condition": int(row["n_condition"]),
        "n_reference": int(row["n_reference"]),
        EVIDENCE: evidence,
        "call": call(evidence, effect, padj, alpha=alpha, condition=condition),
        "expected": "",
        "agreement": "",
        "control": "",
        "family": "" if _blank(row.get("family")) else str(row.get("family")),
        "leave_one_out": leave_one_out(row),
        NOTE: note,
        "detail": detail,
    }


def leave_one_out(row: pd.Series) -> str:
    """Whether a significant row survives leaving out each donor in turn ("" if not re-tested)."""
    survives = row.get("survives_leave_one_out")
    if _blank(survives):
        return ""
    if str(survives).lower() in ("true", "1"):
        return "survives"
    weakest = row.get("loo_weakest_donor")
    worst = _num(row.get("loo_max_pvalue"))
    without = "" if _blank(weakest) else f" without {weakest}"
    return f"fragile{without} (p {format_pvalue(worst)})"


def apply_design(findings: pd.DataFrame, aliased: Sequence[str]) -> pd.DataFrame:
    """Every row ``confounded`` when condition is aliased with a factor; the old label in the note."""
    if not aliased or findings.empty:
        return findings
    out = mark_confounded(findings, aliased)
    out["call"] = f"not separable from {', '.join(aliased)}"
    return out


def _legacy_evidence(table: pd.DataFrame | None) -> pd.DataFrame | None:
    """Tables written before the one-label vocabulary: the label read from the old sentence."""
    if table is None or EVIDENCE not in table:
        return table
    labels = table[EVIDENCE].astype(str)
    known = labels.isin([DONOR_LEVEL, EXPLORATORY, CONFOUNDED, NOT_TESTABLE])
    if known.all():
        return table
    out = table.copy()
    if NOTE not in out:
        out[NOTE] = ""
    out.loc[~known, NOTE] = labels[~known]
    out.loc[~known, EVIDENCE] = np.where(
        labels[~known].str.startswith("not testable"), NOT_TESTABLE, DONOR_LEVEL
    )
    return out


def build_findings(
    *,
    composition: pd.DataFrame | None,
    signatures: pd.DataFrame | None,
    de_summary: pd.DataFrame | None,
    de_genes: pd.DataFrame | None,
    design_findings: pd.DataFrame | None,
    alpha: float,
    contrast: tuple[str, str],
    cycling: pd.DataFrame | None = None,
    development: pd.DataFrame | None = None,
    subsets: pd.DataFrame | None = None,
    compartments: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The findings table: every tested claim, the data's call, and how far it can be trusted.

    Parameters
    ----------
    composition, signatures, de_summary
        ``composition_tests.tsv``, ``signature_tests.tsv`` and ``de_summary.tsv`` (None: absent,
        no rows of that kind).
    cycling, development
        ``cycling_tests.tsv`` and ``development_contrast.tsv`` (None: absent, as in results
        written before these tables existed).
    subsets, compartments
        ``compartments/subset_composition.tsv`` and ``compartments/compartment_adjusted.tsv``
        (None: absent, no rows of those kinds).
    de_genes
        ``de_all.tsv.gz`` (every DE table; None: no top genes named).
    design_findings
        ``design_findings.tsv``: aliasing warnings make every row ``confounded``.
    alpha
        Significance level on padj (config comparison.alpha).
    contrast
        (condition, reference).

    Returns
    -------
    DataFrame
        :data:`FINDINGS_COLUMNS`; rows in the order of :data:`KINDS`, each kind by padj.
    """
    condition, reference = contrast
    parts = []
    if composition is not None and not composition.empty:
        parts.append(
            composition_findings(
                _legacy_evidence(composition), alpha=alpha, condition=condition,
                reference=reference,
            )
        )  # fmt: skip
    if signatures is not None and not signatures.empty:
        parts.append(
            signature_findings(
                _legacy_evidence(signatures), alpha=alpha, condition=condition,
                reference=reference,
            )
        )  # fmt: skip
    for table, rows_of in (
        (cycling, cycling_findings),
        (development, development_findings),
        (subsets, subset_findings),
        (compartments, compartment_findings),
    ):
        if table is not None and not table.empty:
            parts.append(rows_of(table, alpha=alpha, condition=condition, reference=reference))
    if de_summary is not None and not de_summary.empty:
        parts.append(de_findings(de_summary, de_genes, alpha=alpha, condition=condition))
    if not parts:
        return pd.DataFrame(columns=FINDINGS_COLUMNS)
    findings = pd.concat(parts, ignore_index=True)
    findings = apply_design(findings, aliased_factors(design_findings))
    check_evidence(findings[EVIDENCE], table="findings")
    order = findings["kind"].map({k: i for i, k in enumerate(KINDS)})
    findings = findings.assign(_order=order).sort_values(
        ["_order", "padj", "cell_type", "feature"], na_position="last", kind="mergesort"
    )
    return findings.drop(columns="_order").reset_index(drop=True)


def is_finding(findings: pd.DataFrame) -> pd.Series:
    """Rows that are findings: donor-level, and a difference called (or genes found, for DE)."""
    donor_level = findings[EVIDENCE] == DONOR_LEVEL
    shifted = findings["call"].astype(str).str.startswith(("higher in", "lower in"))
    genes_found = (findings["kind"] == "de") & (findings["effect"] > 0)
    return donor_level & (shifted | genes_found)


def findings_from_files(
    *,
    composition: str | None,
    signatures: str | None,
    de_summary: str | None,
    de_all: str | None,
    design_findings: str | None,
    alpha: float,
    contrast: tuple[str, str],
    cycling: str | None = None,
    development: str | None = None,
    subsets: str | None = None,
    compartments: str | None = None,
) -> pd.DataFrame:
    """:func:`build_findings` on the results files (None or an absent file: no rows of that kind)."""
    from cordatlas.report.tables import read_de_genes, read_tsv

    return build_findings(
        composition=read_tsv(composition),
        signatures=read_tsv(signatures),
        de_summary=read_tsv(de_summary),
        de_genes=read_de_genes(de_all),
        design_findings=read_tsv(design_findings),
        alpha=alpha,
        contrast=contrast,
        cycling=read_tsv(cycling),
        development=read_tsv(development),
        subsets=read_tsv(subsets),
        compartments=read_tsv(compartments),
    )
