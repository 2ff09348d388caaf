"""The files a report is built from, named one by one (the rule's inputs)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

#: Truth tables the simulator writes beside the demo samples.
TRUTH_TABLES = (
    "truth_cells",
    "truth_de",
    "truth_composition",
    "truth_condition_composition",
    "truth_genes",
    "truth_samples",
)


@dataclass
class ReportInputs:
    """Paths of every table and figure the report shows (None or []: not there, said so)."""

    sheet: str | None = None
    qc_summary: str | None = None
    qc_thresholds: str | None = None
    qc_overview: str | None = None
    qc_figures: list[str] = field(default_factory=list)
    species_figures: list[str] = field(default_factory=list)
    merge_summary: str | None = None
    design: str | None = None
    design_findings: str | None = None
    cluster_sizes: str | None = None
    umap: str | None = None
    markers: str | None = None
    markers_dotplot: str | None = None
    cluster_labels: str | None = None
    panel_genes: str | None = None
    marker_evidence: str | None = None
    umap_cell_type: str | None = None
    panel_dotplot: str | None = None
    integration_metrics: str | None = None
    integration_verdict: str | None = None
    de_summary: str | None = None
    de_all: str | None = None
    de_tables: list[str] = field(default_factory=list)
    de_figures: list[str] = field(default_factory=list)
    composition_tests: str | None = None
    proportions: str | None = None
    composition_figure: str | None = None
    signature_tests: str | None = None
    signature_heatmap: str | None = None
    signature_donors: str | None = None
    signature_genes: str | None = None
    development_table: str | None = None
    development_figure: str | None = None
    development_contrast: str | None = None
    cycling_table: str | None = None
    cycling_tests: str | None = None
    subset_composition: str | None = None
    compartment_adjusted: str | None = None
    compartments_figure: str | None = None
    enrichment_table: str | None = None
    enrichment_figure: str | None = None
    findings: str | None = None
    truth: list[str] = field(default_factory=list)
    benchmarks: str | None = None
    checksummed: list[str] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, named: dict[str, object]) -> ReportInputs:
        """From a rule's named inputs (unknown names ignored; lists kept as lists)."""
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            if f.name not in named:
                continue
            value = named[f.name]
            if f.default_factory is list:  # type: ignore[comparison-overlap]
                kwargs[f.name] = [str(value)] if isinstance(value, str) else [str(v) for v in value]
            elif isinstance(value, str):
                kwargs[f.name] = str(value) or None
            else:
                kwargs[f.name] = str(value[0]) if len(value) else None  # type: ignore[arg-type]
        inputs = cls(**kwargs)
        if "de_plan" in named:
            inputs.de_tables, inputs.de_figures = de_files(
                str(named["de_plan"]),
                pseudobulk=str(named["de_pseudobulk"]),
                cell_level=str(named["de_cell_level"]),
            )
        return inputs


def de_files(plan: str, *, pseudobulk: str, cell_level: str) -> tuple[list[str], list[str]]:
    """The per-cell-type DE tables and figures the plan's tests wrote in the two DE folders."""
    from cordatlas.compare.plan import (
        METHOD_CELL_LEVEL,
        METHOD_PSEUDOBULK,
        planned_figures,
        planned_tables,
        read_plan,
    )

    table = read_plan(plan)
    folders = {METHOD_PSEUDOBULK: pseudobulk, METHOD_CELL_LEVEL: cell_level}
    return planned_tables(table, folders), planned_figures(table, folders)


def truth_table(inputs: ReportInputs, name: str) -> str | None:
    """The path of one truth table among the inputs (None: not a simulated study)."""
    for path in inputs.truth:
        if Path(path).name == f"{name}.tsv":
            return path
    return None


def _first(*candidates: Path) -> str | None:
    for path in candidates:
        if path.exists():
            return str(path)
    return None


def from_results(results: str | Path, *, truth_dir: str | Path | None = None) -> ReportInputs:
    """Every report input found under one study's ``results/`` (for tests and notebooks).

    The rule names its inputs one by one; this finds the same files by their places in the
    layout (per-sample QC files under ``qc/{sample}/``, or the older ``qc/{sample}_*`` names).
    """
    r = Path(results)
    de_tables = sorted(r.glob("de/pseudobulk/*.tsv")) + sorted(r.glob("de/cell_level/*.tsv"))
    qc_figures = sorted(r.glob("qc/*/qc.png")) or sorted(r.glob("qc/figures/*_qc.png"))
    truth = sorted(Path(truth_dir).glob("*.tsv")) if truth_dir else []
    return ReportInputs(
        sheet=None,
        qc_summary=_first(r / "qc/qc_summary.tsv"),
        qc_thresholds=_first(r / "qc/qc_thresholds.tsv"),
        qc_overview=_first(r / "qc/qc_overview.png", r / "qc/figures/qc_overview.png"),
        qc_figures=[str(p) for p in qc_figures],
        species_figures=[str(p) for p in sorted(r.glob("qc/*/species.png"))],
        merge_summary=_first(r / "merge/merge_summary.tsv"),
        design=_first(r / "design/design.tsv"),
        design_findings=_first(r / "design/design_findings.tsv"),
        cluster_sizes=_first(r / "cluster/cluster_sizes.tsv"),
        umap=_first(r / "cluster/umap.png"),
        markers=_first(r / "cluster/markers.tsv"),
        markers_dotplot=_first(r / "cluster/markers_dotplot.png"),
        cluster_labels=_first(r / "annotate/cluster_labels.tsv"),
        panel_genes=_first(r / "annotate/panel_genes.tsv"),
        marker_evidence=_first(r / "annotate/marker_evidence.tsv"),
        umap_cell_type=_first(r / "annotate/umap_cell_type.png"),
        panel_dotplot=_first(r / "annotate/panel_dotplot.png"),
        integration_metrics=_first(r / "annotate/integration_metrics.tsv"),
        integration_verdict=_first(r / "annotate/integration_verdict.tsv"),
        de_summary=_first(r / "de/de_summary.tsv"),
        de_all=_first(r / "de/de_all.tsv.gz"),
        de_tables=[str(p) for p in de_tables],
        de_figures=[str(p) for p in sorted(r.glob("de/*/figures/*.png"))],
        composition_tests=_first(r / "composition/composition_tests.tsv"),
        proportions=_first(r / "composition/proportions.tsv"),
        composition_figure=_first(r / "composition/composition.png"),
        signature_tests=_first(r / "signatures/signature_tests.tsv"),
        signature_heatmap=_first(r / "signatures/signature_heatmap.png"),
        signature_donors=_first(r / "signatures/donors"),
        signature_genes=_first(r / "signatures/signature_genes.tsv"),
        development_table=_first(r / "signatures/development_axis.tsv"),
        development_figure=_first(r / "signatures/development_axis.png"),
        development_contrast=_first(r / "signatures/development_contrast.tsv"),
        cycling_table=_first(r / "signatures/cycling.tsv"),
        cycling_tests=_first(r / "signatures/cycling_tests.tsv"),
        subset_composition=_first(r / "compartments/subset_composition.tsv"),
        compartment_adjusted=_first(r / "compartments/compartment_adjusted.tsv"),
        compartments_figure=_first(r / "compartments/compartments.png"),
        enrichment_table=_first(r / "enrichment/enrichment.tsv"),
        enrichment_figure=_first(r / "enrichment/enrichment.png"),
        findings=_first(r / "findings.tsv"),
        truth=[str(p) for p in truth],
        benchmarks=_first(r.parent / "benchmarks"),
    )
