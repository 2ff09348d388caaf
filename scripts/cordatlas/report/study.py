"""The first screen: what was studied, whether the data are synthetic, and the design verdict in words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

import pandas as pd

from cordatlas.vocabulary import DONOR_LEVEL

#: Banner levels, from "the comparison can be read as it stands" to "it cannot be trusted".
GREEN, AMBER, RED = "green", "amber", "red"

#: Integration reading: a working clustering with more than this fraction of clusters dominated
#: by one batch, kNN batch entropy below this fraction of its random-mixing value, or a
#: cell-type silhouette this far below the unintegrated one is flagged (thresholds of this
#: report, stated in its text; the metrics themselves are the workflow's).
MAX_DOMINATED_FRACTION = 0.25
MIN_RELATIVE_MIXING = 0.5
MAX_SILHOUETTE_DROP = 0.1


def synthetic_samples(sheet: pd.DataFrame | None, demo_outdir: str | None) -> list[str]:
    """Samples whose path lies under the simulator's folder (config demo.outdir)."""
    if sheet is None or not demo_outdir or "path" not in sheet:
        return []
    root = PurePath(demo_outdir)
    return [
        str(s)
        for s, p in zip(sheet["sample"], sheet["path"], strict=True)
        if isinstance(p, str) and p and root in PurePath(p).parents
    ]


def study_overview(
    sheet: pd.DataFrame | None, qc_summary: pd.DataFrame | None, contrast: Sequence[str]
) -> pd.DataFrame | None:
    """Per condition: samples, donors, cells after QC, and the tissues, technologies, studies."""
    if sheet is None or sheet.empty:
        return None
    sheet = sheet[sheet["condition"].isin(contrast)].copy()
    if qc_summary is not None and {"sample", "cells_out"} <= set(qc_summary.columns):
        cells = qc_summary.set_index(qc_summary["sample"].astype(str))["cells_out"]
        sheet["cells"] = sheet["sample"].astype(str).map(cells)
    rows = []
    for condition in contrast:
        part = sheet[sheet["condition"] == condition]
        row = {
            "condition": condition,
            "samples": len(part),
            "donors": part["donor"].nunique() if "donor" in part else len(part),
            "cells after QC": int(part["cells"].sum()) if "cells" in part else math.nan,
        }
        for column in ("tissue", "technology", "study", "sorted_fraction"):
            values = part[column] if column in part else pd.Series(dtype=str)
            row[column] = ", ".join(sorted({str(v) for v in values if str(v)})) or "unknown"
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Verdict:
    """The design banner: its colour and the sentences behind it."""

    level: str
    headline: str
    points: list[str] = field(default_factory=list)


def integration_reading(
    metrics: pd.DataFrame | None, working_resolution: float | None
) -> list[str]:
    """Warnings read off integration_metrics.tsv at the working resolution (empty: looks fine)."""
    if metrics is None or metrics.empty:
        return []
    rows = metrics
    if working_resolution is not None and "resolution" in metrics:
        chosen = metrics[metrics["resolution"].astype(float) == float(working_resolution)]
        rows = chosen if not chosen.empty else metrics
    row = rows.iloc[0]
    notes = []
    dominated = float(row.get("frac_clusters_batch_dominated", math.nan))
    if dominated > MAX_DOMINATED_FRACTION:
        notes.append(f"{dominated:.0%} of clusters are dominated by one batch")
    mixing, random = (float(row.get(k, math.nan)) for k in
                      ("knn_batch_entropy", "knn_batch_entropy_random"))  # fmt: skip
    if random > 0 and mixing / random < MIN_RELATIVE_MIXING:
        notes.append(
            f"batches mix poorly among neighbours (kNN entropy {mixing:.2f} vs {random:.2f} "
            "under random mixing)"
        )
    kept, before = (float(row.get(k, math.nan)) for k in
                    ("cell_type_silhouette", "cell_type_silhouette_unintegrated"))  # fmt: skip
    if before - kept > MAX_SILHOUETTE_DROP:
        notes.append(f"integration blurred cell types (silhouette {kept:.2f}, {before:.2f} before)")
    return notes


def design_verdict(
    design_findings: pd.DataFrame | None,
    *,
    integration: list[str],
    de_summary: pd.DataFrame | None,
) -> Verdict:
    """Red when condition is aliased or unreplicated, amber on other warnings, green otherwise."""
    if design_findings is None:
        return Verdict(AMBER, "Design not checked: design_findings.tsv is absent.")
    warnings = design_findings[design_findings["severity"].astype(str) == "warning"]
    topics = warnings["topic"].astype(str)
    points = [str(m) for m in warnings["message"]]
    points += [f"Integration: {n}." for n in integration]
    points += _replication_points(de_summary)
    points += [f"Note: {m}" for m in design_findings.loc[
        design_findings["severity"].astype(str) != "warning", "message"]]  # fmt: skip
    if topics.str.startswith(("aliasing:", "replication:")).any():
        headline = (
            "The comparison cannot be trusted as it stands: condition is "
            + ", ".join(_describe(t) for t in topics if ":" in t)
            + ". Every cross-condition row below is confounded or exploratory."
        )
        return Verdict(RED, headline, points)
    if len(warnings) or integration:
        return Verdict(AMBER, "Read with care: the design check raised warnings.", points)
    return Verdict(
        GREEN,
        "Design check passed: condition is not aliased with study or technology, and both "
        "conditions have donor replicates.",
        points,
    )


def _describe(topic: str) -> str:
    kind, _, what = topic.partition(":")
    return f"aliased with {what}" if kind == "aliasing" else f"without replication in {what}"


def _replication_points(de_summary: pd.DataFrame | None) -> list[str]:
    if de_summary is None or de_summary.empty:
        return []
    labels = de_summary["evidence"].astype(str)
    donor = int((labels == DONOR_LEVEL).sum())
    return [
        f"Replication: {donor} of {len(labels)} cell types were tested with donors as the unit; "
        f"the others are exploratory or not testable (too few donors per group)."
    ]
