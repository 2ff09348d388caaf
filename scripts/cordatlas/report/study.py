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


def integration_notes(verdict: pd.DataFrame | None) -> list[str]:
    """The integration verdict's message when it is not good (``integration_verdict.tsv``)."""
    if verdict is None or verdict.empty:
        return []
    rows = verdict[verdict["severity"].astype(str) == "warning"]
    return [str(m) for m in rows["message"]]


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
    points += [f"Integration: {n}." for n in integration]  # integration_notes()
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
    if any(n.startswith("integration failed") for n in integration):
        headline = (
            "The per-cell-type comparison may compare different cells: integration failed "
            "(cord and adult cells rarely share clusters). Read the atlas section first."
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
