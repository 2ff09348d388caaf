"""Build the study report: read the inputs, build each section, fill the autoescaped template."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from cordatlas.report import appendix, comparison, sections, study
from cordatlas.report.blocks import Block, Page
from cordatlas.report.findings import FINDINGS_COLUMNS
from cordatlas.report.inputs import TRUTH_TABLES, ReportInputs, truth_table
from cordatlas.report.provenance import sample_files
from cordatlas.report.tables import offline_init, read_de_genes, read_tsv
from cordatlas.vocabulary import EVIDENCE, EVIDENCE_LABELS, format_pvalue


def environment() -> jinja2.Environment:
    """The template environment: package templates, autoescape on for every template."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("cordatlas.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def read_sheet(path: str | None) -> pd.DataFrame | None:
    """The sample sheet as text (None when not given)."""
    if path is None or not Path(path).is_file():
        return None
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def read_findings(path: str | None) -> pd.DataFrame | None:
    """results/findings.tsv with its text columns kept as text."""
    table = read_tsv(path)
    if table is None:
        return None
    for column in FINDINGS_COLUMNS:
        if column not in table:
            table[column] = ""
    for column in ("effect", "ci_low", "ci_high", "padj"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as plain data (Snakemake's config may hold its own mapping types)."""
    return json.loads(json.dumps(dict(config), default=str))


def first_screen(
    inputs: ReportInputs, tables: dict[str, Any], config: Mapping[str, Any], page: Page
) -> dict[str, Any]:
    """What the reader sees first: the study, the synthetic banner, the verdict, key findings."""
    sheet = tables["sheet"]
    synthetic = bool(inputs.truth)
    fake = study.synthetic_samples(sheet, (config.get("demo") or {}).get("outdir"))
    overview = study.study_overview(sheet, tables["qc_summary"], page.contrast)
    notes = study.integration_notes(tables["integration_verdict"])
    verdict = study.design_verdict(
        tables["design_findings"], integration=notes, de_summary=tables["de_summary"]
    )
    findings = tables["findings"]
    counts = (findings[EVIDENCE].value_counts().reindex(EVIDENCE_LABELS, fill_value=0)
              if findings is not None else None)  # fmt: skip
    return {
        "synthetic": synthetic,
        "synthetic_samples": fake,
        "overview": page.table(overview, "overview") if overview is not None else None,
        "studies": sorted({str(s) for s in sheet["study"]}) if sheet is not None
        and "study" in sheet else [],
        "verdict": verdict,
        "integration_notes": notes,
        "key_findings": sections.key_findings(findings),
        "de_overview": sections.de_overview(findings, page.alpha),
        "evidence_counts": [] if counts is None else list(counts.items()),
    }  # fmt: skip


def read_inputs(inputs: ReportInputs) -> dict[str, Any]:
    """Every table the report reads (None where absent)."""
    names = ["qc_summary", "qc_thresholds", "merge_summary", "design", "design_findings",
             "cluster_sizes", "markers", "cluster_labels", "panel_genes", "integration_metrics",
             "integration_verdict", "marker_evidence",
             "de_summary", "composition_tests", "proportions", "signature_genes",
             "development_table", "development_contrast", "cycling_table", "cycling_tests",
             "subset_composition", "compartment_adjusted", "enrichment_table"]  # fmt: skip
    tables: dict[str, Any] = {n: read_tsv(getattr(inputs, n)) for n in names}
    tables["sheet"] = read_sheet(inputs.sheet)
    tables["findings"] = read_findings(inputs.findings)
    tables["de_genes"] = read_de_genes(inputs.de_all)
    tables["truth"] = {n: read_tsv(truth_table(inputs, n)) for n in TRUTH_TABLES}
    return tables


def body_sections(inputs: ReportInputs, tables: dict[str, Any], page: Page) -> list[Block]:
    """The sections in reading order (the truth panel only on simulated data)."""
    t, findings = tables, tables["findings"]
    figures = {k: getattr(inputs, k) for k in ("umap", "umap_cell_type", "panel_dotplot",
                                               "markers_dotplot")}  # fmt: skip
    out = [
        sections.findings_section(page, findings),
        sections.design_section(page, t["design"], t["design_findings"],
                                t["integration_verdict"]),
        sections.qc_section(page, t["qc_summary"], t["qc_thresholds"], inputs.qc_overview,
                            inputs.qc_figures, t["sheet"], inputs.species_figures),
        sections.atlas_section(page, t, figures),
        comparison.composition_section(page, t["composition_tests"], findings,
                                       inputs.composition_figure, t["proportions"]),
        comparison.de_section(page, t["de_summary"], inputs.de_tables, inputs.de_figures),
        comparison.signatures_section(page, findings, inputs.signature_heatmap,
                                      inputs.signature_donors, t["signature_genes"]),
        comparison.cycling_section(page, t["cycling_tests"], t["cycling_table"]),
        comparison.compartments_section(page, t["subset_composition"],
                                        t["compartment_adjusted"], inputs.compartments_figure),
        comparison.development_section(page, t["development_table"], t["development_contrast"],
                                       inputs.development_figure),
        comparison.table_section(page, "enrichment", "Enrichment", t["enrichment_table"],
                                 inputs.enrichment_figure, caption="Gene-set enrichment in DE ranks",
                                 missing="results/enrichment/enrichment.tsv"),
    ]  # fmt: skip
    if inputs.truth:
        out.append(appendix.truth_section(page, t["truth"], findings, t["de_genes"]))
    return out


def build_report(
    inputs: ReportInputs,
    out_html: str | os.PathLike[str],
    *,
    config: Mapping[str, Any],
    snakemake_version: str | None = None,
    results_dir: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] = ".",
) -> Path:
    """Write the report page and its figures folder beside it; return the page's path.

    Parameters
    ----------
    inputs
        The files to show (see :class:`ReportInputs`); absent ones are said so in the page.
    out_html
        ``<study>/results/report/index.html``; figures go to ``figures/`` beside it.
    config
        The resolved config of the run (methods, seeds, contrast, alpha, demo folder).
    snakemake_version
        Shown in the provenance section.
    results_dir
        The study's ``results/`` (figures keep their place under it in ``figures/``); default:
        the folder above the page's.
    workdir
        The folder the sample sheet's relative paths start from (their checksums).
    """
    out_html = Path(out_html)
    out_dir = out_html.parent
    shutil.rmtree(out_dir / "figures", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _plain(config)
    contrast = (str(config["contrast"]["condition"]), str(config["contrast"]["reference"]))
    alpha = float((config.get("comparison") or {}).get("alpha", 0.05))
    results = Path(results_dir) if results_dir is not None else out_dir.parent
    page = Page(out_dir=out_dir, results_dir=results, alpha=alpha, contrast=contrast)
    tables = read_inputs(inputs)
    first = first_screen(inputs, tables, config, page)
    body = body_sections(inputs, tables, page)
    checksummed = [inputs.sheet, *inputs.checksummed, *sample_files(tables["sheet"], workdir)]
    body += [
        appendix.methods_section(page, config),
        appendix.provenance_section(page, config, checksummed=[c for c in checksummed if c],
                                    benchmarks=inputs.benchmarks, synthetic=bool(inputs.truth),
                                    snakemake_version=snakemake_version),
    ]  # fmt: skip
    html = environment().get_template("index.html.j2").render(
        first=first, sections=body, contrast=contrast, alpha=alpha, itables=offline_init(),
        format_pvalue=format_pvalue,
    )  # fmt: skip
    out_html.write_text(html, encoding="utf-8")
    return out_html
