"""One function per report section: it reads the tables it is given and returns blocks to render.

Each function takes tables (DataFrames, None when the file is absent) and figure paths, and
says in the page what is missing. None computes a statistic.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cordatlas.report import blocks as b
from cordatlas.report.blocks import Block, Page
from cordatlas.report.findings import is_finding
from cordatlas.vocabulary import EVIDENCE, NOTE

#: Columns of the findings table as the page shows it (all of findings.tsv but the anchor).
FINDINGS_SHOWN = [
    "kind", "cell_type", "feature", "call", "effect", "ci_low", "ci_high", "padj",
    "n_condition", "n_reference", EVIDENCE, "expected", "agreement", "control",
    "effect_measure", NOTE, "detail",
]  # fmt: skip


#: How the first screen names each kind of finding (a signature names itself).
KIND_WORDS = {"composition": "share of cells", "de": "expression",
              "cycling": "cycling fraction", "development": "development axis"}  # fmt: skip


def _detail_href(row: pd.Series) -> str | None:
    """The same-page anchor of a findings row's ``detail`` (``report/index.html#de-erythroid``)."""
    detail = str(row.get("detail", ""))
    return "#" + detail.split("#", 1)[1] if "#" in detail else None


def findings_section(page: Page, findings: pd.DataFrame | None) -> Block:
    """Every tested claim, one row each (the rows of results/findings.tsv)."""
    if findings is None:
        return b.section("findings", "Findings", [b.absent("results/findings.tsv")])
    condition, reference = page.contrast
    found = findings[is_finding(findings)]
    intro = (
        f"One row per tested claim, {condition} vs {reference}: each composition shift, each "
        "signature in each cell type, each cell type's cycling fraction and place on the "
        "development axis, each cell type's differential expression in numbers. "
        f"'call' is the data's answer at padj < {page.alpha:g}; only donor-level rows are "
        "findings; exploratory rows are rankings, confounded rows cannot be told from the "
        "aliased factor. The 95 % CI is the test table's own interval, else the difference "
        "+/- t(0.975, df) x se from it. 'agreement' reads the call against the signature library's expectation; "
        "'control' is the sample-handling control in the same cell type. The same rows are "
        "in results/findings.tsv."
    )
    blocks = [
        b.text(intro),
        b.text(f"{len(found)} of {len(findings)} rows are donor-level findings."),
        page.table(
            findings, "findings", columns=FINDINGS_SHOWN, links={"detail": _detail_href}
        ),  # fmt: skip
    ]
    return b.section("findings", "Findings", blocks)


def key_findings(findings: pd.DataFrame | None, limit: int = 12) -> list[str]:
    """The first screen's sentences: the donor-level findings, strongest first."""
    if findings is None or findings.empty:
        return []
    found = findings[is_finding(findings) & (findings["kind"] != "de")].sort_values("padj")
    lines = []
    for _, row in found.head(limit).iterrows():
        what = KIND_WORDS.get(str(row["kind"]), f"signature {row['feature']}")
        padj = "" if pd.isna(row["padj"]) else f", padj {row['padj']:.2g}"
        lines.append(
            f"{row['cell_type']}: {what} {row['call']}{padj} "
            f"({int(row['n_condition'])} vs {int(row['n_reference'])} donors)"
        )
    return lines


def de_overview(findings: pd.DataFrame | None, alpha: float) -> str:
    """One sentence on differential expression across cell types (from the findings' DE rows)."""
    if findings is None:
        return ""
    de = findings[findings["kind"] == "de"]
    if de.empty:
        return ""
    donor = de[de[EVIDENCE] == "donor_level"]
    with_genes = donor[donor["effect"] > 0]
    others = len(de) - len(donor)
    return (
        f"Differential expression: {len(donor)} of {len(de)} cell types tested with donors as "
        f"the unit, {len(with_genes)} of them with genes at padj < {alpha:g} "
        f"({int(with_genes['effect'].sum())} cell-type x gene hits); {others} cell types "
        "exploratory, confounded or not testable (rankings, not findings)."
    )


def design_section(
    page: Page,
    design: pd.DataFrame | None,
    findings: pd.DataFrame | None,
    integration: pd.DataFrame | None = None,
) -> Block:
    """The design check's findings with the integration verdict, and the cross-tabulations."""
    blocks: list[Block] = []
    parts = [t[["severity", "topic", "message"]] for t in (findings, integration) if t is not None]
    if findings is None:
        blocks.append(b.absent("results/design/design_findings.tsv"))
    if integration is None:
        blocks.append(b.absent("results/annotate/integration_verdict.tsv"))
    combined = pd.concat(parts, ignore_index=True) if parts else None
    if combined is not None and combined.empty:
        blocks.append(b.text("The design check raised no finding."))
    elif combined is not None:
        blocks.append(page.table(combined, "design-findings", caption=(
            "Design findings before integration (results/design/design_findings.tsv) and the "
            "integration verdict after it (results/annotate/integration_verdict.tsv)")))  # fmt: skip
    if design is None:
        blocks.append(b.absent("results/design/design.tsv"))
    else:
        blocks.append(b.text("Samples and donors per condition and level of each factor:"))
        blocks.append(page.table(design, "design"))
    return b.section("design", "Study design", blocks)


#: Per-sample QC columns shown first (the rest of qc_summary.tsv is in the thresholds table).
QC_COLUMNS = ["sample", "condition", "cells_in", "removed_total", "cells_out", "predicted_doublets",
              "doublet_threshold", "dropped_sample"]  # fmt: skip


def removed_by_reason(qc_summary: pd.DataFrame) -> pd.DataFrame:
    """Cells removed per reason, summed over samples (the summary's removed_* columns)."""
    reasons = [c for c in qc_summary.columns
               if c.startswith("removed_") and c != "removed_total"]  # fmt: skip
    total_in = float(qc_summary["cells_in"].sum())
    rows = [
        {"reason": c.removeprefix("removed_"),
         "cells": int(qc_summary[c].sum()),
         "% of cells in": 100 * float(qc_summary[c].sum()) / total_in if total_in else 0.0}
        for c in reasons
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["reason", "cells", "% of cells in"])


def qc_section(
    page: Page,
    summary: pd.DataFrame | None,
    thresholds: pd.DataFrame | None,
    overview: str | None,
    figures: list[str],
    sheet: pd.DataFrame | None,
    species: list[str] | None = None,
) -> Block:
    """Per-sample QC table, cells removed by reason, thresholds, each sample's figures.

    Species figures (``qc/{sample}/species.png``) are shown only for mixed-species samples: those
    whose ``species.tsv`` beside the figure holds cells (single-species files write none).
    """
    blocks: list[Block] = []
    if summary is None:
        blocks.append(b.absent("results/qc/qc_summary.tsv"))
    else:
        shown = summary.copy()
        if sheet is not None:
            shown["condition"] = (
                shown["sample"]
                .astype(str)
                .map(sheet.set_index(sheet["sample"].astype(str))["condition"])
            )
        blocks.append(page.table(shown, "qc-summary", columns=QC_COLUMNS,
                                 caption="Cells per sample before and after QC"))  # fmt: skip
        blocks.append(page.table(removed_by_reason(summary), "qc-removed",
                                 caption="Cells removed, by reason (a cell may fail several)"))  # fmt: skip
    blocks.append(page.figure(overview, "Cells kept and removed per sample"))
    if thresholds is None:
        blocks.append(b.absent("results/qc/qc_thresholds.tsv"))
    else:
        blocks.append(page.table(thresholds, "qc-thresholds",
                                 caption="Thresholds per sample and metric, and how each was set"))  # fmt: skip
    gallery = [page.figure(f, f"QC metrics and thresholds: {_sample_of(f)}") for f in figures]
    blocks.append(
        b.group("Threshold figures per sample", gallery or [b.absent("per-sample QC figures")])
    )
    mixed = [f for f in species or [] if _has_cells(Path(f).with_suffix(".tsv"))]
    if mixed:
        blocks.append(b.group("Species calls of mixed-species samples", [
            page.figure(f, f"Species calls (barnyard): {Path(f).parent.name}") for f in mixed]))  # fmt: skip
    return b.section("qc", "Quality control", blocks)


def _has_cells(table: Path) -> bool:
    """Whether a species table holds at least one cell (a header line, then rows)."""
    if not table.is_file():
        return False
    with table.open() as handle:
        return sum(1 for _ in zip(range(2), handle, strict=False)) > 1


def _sample_of(path: str) -> str:
    """The sample a QC figure belongs to (``qc/{sample}/qc.png``, or ``{sample}_qc.png``)."""
    p = Path(path)
    return p.parent.name if p.name == "qc.png" else p.name.removesuffix("_qc.png")


def annotation_table(
    labels: pd.DataFrame, panel: pd.DataFrame | None, markers: pd.DataFrame | None, n: int = 5
) -> pd.DataFrame:
    """Each cluster's label and confidence beside the panel markers and its own top markers."""
    out = labels.copy()
    if panel is not None and "markers_used" in panel:
        used = panel.set_index(panel["cell_type"].astype(str))["markers_used"]
        used = used.astype(str).str.replace(",", ", ")
        out["panel markers used"] = out["cell_type"].astype(str).map(used).fillna("")
    if markers is not None and {"cluster", "gene", "rank"} <= set(markers.columns):
        top = (
            markers.sort_values(["cluster", "rank"])
            .groupby(markers["cluster"].astype(str), sort=False)["gene"]
            .apply(lambda g: ", ".join(map(str, g.head(n))))
        )
        out[f"top {n} cluster markers"] = out["cluster"].astype(str).map(top).fillna("")
    return out


#: Columns of results/annotate/marker_evidence.tsv shown in the atlas section.
EVIDENCE_COLUMNS = ["cluster", "cell_type", "step", "role", "marker_set", "score", "n_measured",
                    "n_detected", "markers_detected", "markers_not_detected",
                    "markers_unmeasured"]  # fmt: skip


def atlas_section(
    page: Page, tables: dict[str, pd.DataFrame | None], figures: dict[str, str | None]
) -> Block:
    """UMAPs, clusters, the annotation with its evidence, and the integration metrics."""
    blocks: list[Block] = [
        page.figure(figures.get("umap"), "UMAP of the integrated embedding (clusters, samples, "
                    "conditions)"),
        page.figure(figures.get("umap_cell_type"), "UMAP coloured by cell-type label"),
    ]  # fmt: skip
    merge = tables.get("merge_summary")
    blocks.append(page.table(merge, "merge", caption="Merge") if merge is not None
                  else b.absent("results/merge/merge_summary.tsv"))  # fmt: skip
    sizes = tables.get("cluster_sizes")
    blocks.append(page.table(sizes, "cluster-sizes", caption="Clusters per Leiden resolution")
                  if sizes is not None else b.absent("results/cluster/cluster_sizes.tsv"))  # fmt: skip
    labels = tables.get("cluster_labels")
    if labels is None:
        blocks.append(b.absent("results/annotate/cluster_labels.tsv"))
    else:
        table = annotation_table(labels, tables.get("panel_genes"), tables.get("markers"))
        blocks.append(page.table(table, "annotation", caption=(
            "Annotation per cluster: the label, its confidence and margin over the runner-up, "
            "the panel markers behind it and the cluster's own top markers")))  # fmt: skip
    evidence = tables.get("marker_evidence")
    if evidence is not None:
        shown = [c for c in EVIDENCE_COLUMNS if c in evidence.columns]
        blocks.append(page.table(evidence, "marker-evidence", columns=shown, caption=(
            "Markers behind each label: per cluster and step (lineage, then subtype), the "
            "winning and runner-up marker sets, which markers were detected in the cluster, "
            "which were not, and which its samples never measured")))  # fmt: skip
    blocks.append(page.figure(figures.get("panel_dotplot"), "Marker panel per cell type"))
    blocks.append(page.figure(figures.get("markers_dotplot"), "Top markers per cluster"))
    metrics = tables.get("integration_metrics")
    if metrics is None:
        blocks.append(b.absent("results/annotate/integration_metrics.tsv"))
    else:
        verdict = tables.get("integration_verdict")
        said = ("Integration verdict absent (results/annotate/integration_verdict.tsv)"
                if verdict is None or verdict.empty else
                "Integration verdict: " + "; ".join(verdict["message"].astype(str)))  # fmt: skip
        blocks += [b.text(said + "."), page.table(metrics, "integration")]
    return b.section("atlas", "Atlas and annotation", blocks)
