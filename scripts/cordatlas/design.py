"""Study-design checks before integration: confounding of condition with technical factors, and replication."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

log = logging.getLogger(__name__)

#: Sample-sheet columns checked against condition.
DESIGN_FACTORS = ("study", "technology", "tissue", "sorted_fraction", "sex")


@dataclass(frozen=True)
class DesignCheck:
    """Cross-tabulations and findings of :func:`check_design`."""

    table: pd.DataFrame  # factor, level, condition, n_samples, n_donors
    findings: pd.DataFrame  # severity (warning/info), topic, message


def _levels_by_condition(samples: pd.DataFrame, factor: str) -> dict[str, set[str]]:
    return {
        str(condition): set(group[factor].astype(str))
        for condition, group in samples.groupby("condition", observed=True)
    }


def check_design(
    samples: pd.DataFrame,
    *,
    contrast: Sequence[str],
    batch_key: str | None,
    factors: Sequence[str] = DESIGN_FACTORS,
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
        (condition of interest, reference).
    batch_key
        The obs column integration corrects for (config atlas.integration_key), or None.
    factors
        Sample-sheet columns to check; missing or all-unknown columns are skipped.
    """
    samples = samples[samples["condition"].isin(contrast)].copy()
    rows = []
    findings: list[dict[str, str]] = []
    keys = [f for f in dict.fromkeys([*factors, *([batch_key] if batch_key else [])])]
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
        levels = _levels_by_condition(samples, factor)
        all_levels = set(values)
        if len(all_levels) < 2 or all_levels == {"unknown"}:
            continue
        shared = set.intersection(*levels.values()) if len(levels) == len(contrast) else set()
        if not shared and factor == "tissue":
            # cord blood is a tissue of its own: tissue differs by construction, not by accident
            findings.append(
                {
                    "severity": "info",
                    "topic": "tissue",
                    "message": (
                        "tissue differs between conditions by construction ("
                        + "; ".join(f"{c}: {sorted(v)}" for c, v in levels.items())
                        + "); differences include the tissue of origin (e.g. marrow vs blood)."
                    ),
                }
            )
        elif not shared:
            described = "; ".join(
                f"every {c} sample has {factor} {sorted(v)}" for c, v in levels.items()
            )
            findings.append(
                {
                    "severity": "warning",
                    "topic": f"aliasing:{factor}",
                    "message": (
                        f"condition is aliased with {factor} ({described}): cord-vs-adult "
                        f"differences in expression, composition and signatures cannot be told "
                        f"apart from {factor} effects. Still valid: comparisons within one "
                        f"condition (between cell types, between donors) and the cell-type "
                        f"labels themselves. Add samples of both conditions from one {factor} "
                        f"to separate them."
                    ),
                }
            )
        elif shared != all_levels:
            findings.append(
                {
                    "severity": "info",
                    "topic": f"imbalance:{factor}",
                    "message": (
                        f"{factor} is partly confounded with condition: only {sorted(shared)} "
                        f"hold samples of both conditions; consider {factor} as a covariate."
                    ),
                }
            )
    if batch_key and batch_key in samples:
        levels = _levels_by_condition(samples, batch_key)
        per_condition = {c: len(v) for c, v in levels.items()}
        shared = set.intersection(*levels.values()) if len(levels) == len(contrast) else set()
        if not shared and all(n == 1 for n in per_condition.values()):
            findings.append(
                {
                    "severity": "warning",
                    "topic": "integration",
                    "message": (
                        f"the integration key {batch_key!r} is the condition itself (one level "
                        f"per condition): integrating on it removes the cord-vs-adult difference. "
                        f"Set atlas.integration: none or integrate on a key with both conditions "
                        f"in some level."
                    ),
                }
            )
        elif not shared:
            findings.append(
                {
                    "severity": "info",
                    "topic": "integration",
                    "message": (
                        f"the integration key {batch_key!r} is nested within condition: "
                        f"integration aligns its levels across conditions, so condition "
                        f"differences in the integrated embedding shrink; differential "
                        f"expression uses raw counts and is not affected."
                    ),
                }
            )
    donors = samples.groupby("condition", observed=True)["donor"].nunique()
    for condition in contrast:
        n = int(donors.get(condition, 0))
        if n < 2:
            findings.append(
                {
                    "severity": "warning",
                    "topic": f"replication:{condition}",
                    "message": (
                        f"{condition} has {n} donor(s): no biological replication; any "
                        f"cord-vs-adult test is exploratory (cells of one donor are not "
                        f"independent replicates)."
                    ),
                }
            )
    for finding in findings:
        (log.warning if finding["severity"] == "warning" else log.info)(
            "design: %s", finding["message"]
        )
    table = pd.DataFrame(rows, columns=["factor", "level", "condition", "n_samples", "n_donors"])
    donors_row = pd.DataFrame(
        {
            "factor": "donor_count",
            "level": "all",
            "condition": list(donors.index.astype(str)),
            "n_samples": samples.groupby("condition", observed=True)["sample"].nunique().to_list(),
            "n_donors": donors.to_list(),
        }
    )
    table = pd.concat([donors_row, table], ignore_index=True)
    return DesignCheck(
        table=table, findings=pd.DataFrame(findings, columns=["severity", "topic", "message"])
    )
