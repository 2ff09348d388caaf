"""Study-design checks before integration: confounding of condition with technical factors, and replication."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from cordatlas.checks import check_contrast, require_columns
from cordatlas.vocabulary import CONFOUNDED, EVIDENCE, NOTE

log = logging.getLogger(__name__)

#: Sample-sheet columns checked against condition.
DESIGN_FACTORS = ("study", "technology", "tissue", "sorted_fraction", "sex")

#: Columns of the design table and of the findings table.
TABLE_COLUMNS = ["factor", "level", "condition", "n_samples", "n_donors"]
FINDING_COLUMNS = ["severity", "topic", "message"]


@dataclass(frozen=True)
class DesignCheck:
    """Cross-tabulations and findings of :func:`check_design`."""

    table: pd.DataFrame  # factor, level, condition, n_samples, n_donors
    findings: pd.DataFrame  # severity (warning/info), topic, message


def check_design(
    samples: pd.DataFrame,
    *,
    contrast: Sequence[str],
    batch_key: str | None,
    factors: Sequence[str] = DESIGN_FACTORS,
    numeric_covariates: Sequence[str] = (),
) -> DesignCheck:
    """Cross-tabulate condition against technical factors and flag what the design cannot answer.

    A factor is *aliased* with condition when it has several levels and none of them holds
    samples of both conditions: every cord-vs-adult difference is then also a difference between
    those levels (e.g. Drop-seq vs 10x), and no model can tell the two apart. Integrating on an
    aliased key removes the very difference the comparison is after.

    Parameters
    ----------
    samples
        One row per sample kept after QC, with `sample`, `donor`, `condition` and the factors.
    contrast
        (condition of interest, reference), e.g. ``params.Contrast.as_tuple()``.
    batch_key
        The obs column integration corrects for (config atlas.integration_key), or None.
    factors
        Sample-sheet columns to check; missing or all-unknown columns are skipped.
    numeric_covariates
        Numeric covariates of the models (config comparison.covariates with type numeric),
        sheet columns: each is checked for aliasing with condition and for overlap between
        the conditions (:func:`_numeric_findings`).
    """
    # check
    contrast = check_contrast(contrast)
    require_columns(
        samples.columns,
        ["sample", "donor", "condition"],
        table="sample sheet",
        fix="give every sample its sample, donor and condition",
    )
    # compute
    samples = samples[samples["condition"].isin(contrast)].copy()
    keys = list(dict.fromkeys([*factors, *([batch_key] if batch_key else [])]))
    rows, findings = _check_factors(samples, keys=keys, contrast=contrast)
    if batch_key and batch_key in samples:
        findings += _integration_findings(samples, batch_key=batch_key, contrast=contrast)
    findings += _replication_findings(samples, contrast=contrast)
    for covariate in numeric_covariates:
        if covariate in samples:
            findings += _numeric_findings(samples, covariate=covariate, contrast=contrast)
    # format
    for finding in findings:
        (log.warning if finding["severity"] == "warning" else log.info)(
            "design: %s", finding["message"]
        )
    return DesignCheck(
        table=_design_table(samples, rows),
        findings=pd.DataFrame(findings, columns=FINDING_COLUMNS),
    )


def _levels_by_condition(samples: pd.DataFrame, factor: str) -> dict[str, set[str]]:
    return {
        str(condition): set(group[factor].astype(str))
        for condition, group in samples.groupby("condition", observed=True)
    }


def _shared_levels(levels: dict[str, set[str]], contrast: Sequence[str]) -> set[str]:
    """Levels holding samples of both conditions (none when a condition has no sample)."""
    return set.intersection(*levels.values()) if len(levels) == len(contrast) else set()


def _finding(severity: str, topic: str, message: str) -> dict[str, str]:
    return {"severity": severity, "topic": topic, "message": message}


def _check_factors(
    samples: pd.DataFrame, *, keys: Sequence[str], contrast: Sequence[str]
) -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    """Cross-tabulation rows and aliasing findings of each factor, in order.

    Missing values of each factor become "unknown" in `samples` (in place) as it is reached.
    """
    rows: list[dict[str, object]] = []
    findings: list[dict[str, str]] = []
    for factor in keys:
        if factor not in samples or factor == "condition":
            continue
        values = samples[factor].astype(str).replace({"nan": "unknown", "<NA>": "unknown"})
        samples[factor] = values
        for (level, condition), group in samples.groupby([factor, "condition"], observed=True):
            rows.append(
                {
                    "factor": factor,
                    "level": level,
                    "condition": condition,
                    "n_samples": int(group["sample"].nunique()),
                    "n_donors": int(group["donor"].nunique()),
                }
            )
        if factor in ("sample", "donor"):
            continue
        finding = _aliasing_finding(samples, factor=factor, contrast=contrast)
        if finding is not None:
            findings.append(finding)
    return rows, findings


def _aliasing_finding(
    samples: pd.DataFrame, *, factor: str, contrast: Sequence[str]
) -> dict[str, str] | None:
    """Whether `factor` is aliased with condition, differs by construction, or is imbalanced."""
    levels = _levels_by_condition(samples, factor)
    all_levels = set(samples[factor])
    if len(all_levels) < 2 or all_levels == {"unknown"}:
        return None
    shared = _shared_levels(levels, contrast)
    if not shared and factor == "tissue":
        # cord blood is a tissue of its own: tissue differs by construction, not by accident
        return _finding(
            "info",
            "tissue",
            "tissue differs between conditions by construction ("
            + "; ".join(f"{c}: {sorted(v)}" for c, v in levels.items())
            + "); differences include the tissue of origin (e.g. marrow vs blood).",
        )
    if not shared:
        described = "; ".join(
            f"every {c} sample has {factor} {sorted(v)}" for c, v in levels.items()
        )
        return _finding(
            "warning",
            f"aliasing:{factor}",
            f"condition is aliased with {factor} ({described}): cord-vs-adult "
            f"differences in expression, composition and signatures cannot be told "
            f"apart from {factor} effects. Still valid: comparisons within one "
            f"condition (between cell types, between donors) and the cell-type "
            f"labels themselves. Add samples of both conditions from one {factor} "
            f"to separate them.",
        )
    if shared != all_levels:
        return _finding(
            "info",
            f"imbalance:{factor}",
            f"{factor} is partly confounded with condition: only {sorted(shared)} "
            f"hold samples of both conditions; consider {factor} as a covariate.",
        )
    return None


def _integration_findings(
    samples: pd.DataFrame, *, batch_key: str, contrast: Sequence[str]
) -> list[dict[str, str]]:
    """Whether integrating on `batch_key` would remove (or shrink) the condition difference."""
    levels = _levels_by_condition(samples, batch_key)
    per_condition = {c: len(v) for c, v in levels.items()}
    shared = _shared_levels(levels, contrast)
    if not shared and all(n == 1 for n in per_condition.values()):
        return [
            _finding(
                "warning",
                "integration",
                f"the integration key {batch_key!r} is the condition itself (one level "
                f"per condition): integrating on it removes the cord-vs-adult difference. "
                f"Set atlas.integration: none or integrate on a key with both conditions "
                f"in some level.",
            )
        ]
    if not shared:
        return [
            _finding(
                "info",
                "integration",
                f"the integration key {batch_key!r} is nested within condition: "
                f"integration aligns its levels across conditions, so condition "
                f"differences in the integrated embedding shrink; differential "
                f"expression uses raw counts and is not affected.",
            )
        ]
    return []


def _replication_findings(
    samples: pd.DataFrame, *, contrast: Sequence[str]
) -> list[dict[str, str]]:
    """A warning for each condition with fewer than two donors."""
    donors = samples.groupby("condition", observed=True)["donor"].nunique()
    findings = []
    for condition in contrast:
        n = int(donors.get(condition, 0))
        if n < 2:
            findings.append(
                _finding(
                    "warning",
                    f"replication:{condition}",
                    f"{condition} has {n} donor(s): no biological replication; any "
                    f"cord-vs-adult test is exploratory (cells of one donor are not "
                    f"independent replicates).",
                )
            )
    return findings


def _numeric_findings(
    samples: pd.DataFrame, *, covariate: str, contrast: Sequence[str]
) -> list[dict[str, str]]:
    """Whether a numeric covariate can be adjusted for beside condition, from its donors' values.

    One value per condition: the covariate is aliased with condition and the models leave it
    out (its effect cannot be told apart from condition's). Ranges that do not overlap: an
    adjusted condition effect rests on a straight-line extrapolation of the covariate's effect
    across the gap between the groups (the classic caution of analysis of covariance without
    common support; e.g. cord blood is 0 years old by construction, so an age slope is
    estimated within the adults only).
    """
    donors = samples.drop_duplicates("donor")
    values = pd.to_numeric(donors[covariate], errors="coerce")
    ranges = {
        c: (float(v.min()), float(v.max()))
        for c in contrast
        if (v := values[donors["condition"] == c].dropna()).size
    }
    if len(ranges) < 2:
        return []
    described = "; ".join(
        f"{c} {low:g}" if low == high else f"{c} {low:g} to {high:g}"
        for c, (low, high) in ranges.items()
    )
    (low_c, high_c), (low_r, high_r) = (ranges[c] for c in contrast)
    if low_c == high_c and low_r == high_r:
        return [
            _finding(
                "warning",
                f"covariate:{covariate}",
                f"{covariate} takes one value per condition ({described}): it is aliased "
                f"with condition, so the donor-level models leave it out and its effect "
                f"cannot be told apart from the cord-vs-adult difference.",
            )
        ]
    if high_c < low_r or high_r < low_c:
        return [
            _finding(
                "warning",
                f"covariate:{covariate}",
                f"{covariate} does not overlap between the conditions ({described}): "
                f"effects adjusted for it extrapolate its fitted slope across the gap; "
                f"compare the adjusted and unadjusted results (covariates column) before "
                f"trusting either.",
            )
        ]
    return [
        _finding(
            "info",
            f"covariate:{covariate}",
            f"{covariate} overlaps between the conditions ({described}).",
        )
    ]


def _design_table(samples: pd.DataFrame, rows: list[dict[str, object]]) -> pd.DataFrame:
    """Donor and sample counts per condition first, then the factor cross-tabulations."""
    by_condition = samples.groupby("condition", observed=True)
    donors = by_condition["donor"].nunique()
    donors_row = pd.DataFrame(
        {
            "factor": "donor_count",
            "level": "all",
            "condition": list(donors.index.astype(str)),
            "n_samples": by_condition["sample"].nunique().to_list(),
            "n_donors": donors.to_list(),
        }
    )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return pd.concat([donors_row, table], ignore_index=True)


def aliased_factors(design_findings: pd.DataFrame | None) -> list[str]:
    """Factors the design check found aliased with condition (its ``aliasing:<factor>`` warnings)."""
    if design_findings is None or design_findings.empty:
        return []
    rows = design_findings[design_findings["severity"].astype(str) == "warning"]
    return [t.split(":", 1)[1] for t in rows["topic"].astype(str) if t.startswith("aliasing:")]


def read_aliased_factors(path: str | None) -> list[str]:
    """:func:`aliased_factors` of a ``design_findings.tsv`` (None: no design check, no factor)."""
    if path is None:
        return []
    return aliased_factors(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False))


def mark_confounded(table: pd.DataFrame, aliased: Sequence[str]) -> pd.DataFrame:
    """Every tested row of a results table labelled ``confounded`` when condition is aliased.

    The one place where aliasing (a study-level fact found by :func:`check_design`) reaches the
    rows of the DE plan and tables, composition, signature and findings tables: every row (a
    cross-condition comparison by construction) gets evidence ``confounded`` and its former label
    in ``note``, ``not_testable`` rows included (the note keeps why nothing was tested). Tables
    without a ``note`` column (the DE tables) only change label; their plan keeps the note. No
    aliased factor: the table is returned unchanged.
    """
    if not aliased or table.empty or EVIDENCE not in table:
        return table
    out = table.copy()
    factors = ", ".join(aliased)
    tested = out[EVIDENCE].astype(str) != CONFOUNDED
    if NOTE in out:  # tables with a note column keep the former label there
        prefix = (
            f"condition aliased with {factors} (table's label: "
            + out.loc[tested, EVIDENCE].astype(str)
            + ")"
        )
        notes = out.loc[tested, NOTE].fillna("").astype(str)
        out.loc[tested, NOTE] = prefix.where(notes.str.strip() == "", prefix + "; " + notes)
    out.loc[tested, EVIDENCE] = CONFOUNDED
    return out
