"""The study report: findings read from the results tables, the verdict, escaping, the page itself."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from cordatlas.report import study
from cordatlas.report.findings import (
    FINDINGS_COLUMNS,
    build_findings,
    confidence_interval,
    control_status,
    findings_from_files,
    is_finding,
    leave_one_out,
)
from cordatlas.report.inputs import ReportInputs, from_results
from cordatlas.report.render import build_report
from cordatlas.report.tables import read_tsv

ROOT = Path(__file__).resolve().parents[2]

#: A string that runs script wherever it reaches the page unescaped.
INJECTION = '"><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'

#: A 1 x 1 PNG, standing in for every figure.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
CONTRAST = ("cord_blood", "adult")


def composition_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_type": ["CD4_naive", "CD4_memory", "pDC", "HSC_MPP"],
            "n_condition": [4, 4, 4, 4],
            "n_reference": [4, 4, 4, 1],
            "mean_proportion_condition": [0.23, 0.03, 0.02, 0.04],
            "mean_proportion_reference": [0.12, 0.17, 0.02, 0.01],
            "log2_ratio": [1.0, -2.5, 0.0, 2.0],
            "difference": [0.85, -2.1, 0.05, math.nan],
            "se": [0.15, 0.13, 0.3, math.nan],
            "t": [5.6, -16.0, 0.2, math.nan],
            "df": [6.0, 6.0, 6.0, math.nan],
            "pvalue": [0.001, 1e-6, 0.8, math.nan],
            "padj": [0.004, 1e-5, 0.8, math.nan],
            "transform": ["logit"] * 4,
            "covariates": [""] * 4,
            "evidence": ["donor_level", "donor_level", "donor_level", "not_testable"],
            "note": ["", "", "", "1 adult donor"],
            "presence": ["both"] * 4,
        }
    )


def signature_table(name: str = "cytotoxicity") -> pd.DataFrame:
    base = {
        "category": "cytotoxicity", "concordance": "agree", "n_condition": 4, "n_reference": 4,
        "mean_condition": 1.3, "mean_reference": 1.85, "se": 0.05, "t": -11.0, "df": 6.0,
        "pvalue": 1e-5, "covariates": "", "evidence": "donor_level", "citations": "X 2012",
    }  # fmt: skip
    rows = [
        {**base, "cell_type": "NK_CD56dim", "signature": name, "role": "biological",
         "expected_direction": "down", "observed_direction": "down", "difference": -0.55,
         "padj": 0.003, "control_difference": 0.004, "control_padj": 0.97, "note": "quote me"},
        {**base, "cell_type": "NK_CD56dim", "signature": "stress_processing_delay",
         "role": "control", "expected_direction": "", "observed_direction": "up",
         "concordance": "no_expectation", "difference": 0.004, "padj": 0.97,
         "control_difference": math.nan, "control_padj": math.nan, "note": ""},
    ]  # fmt: skip
    return pd.DataFrame(rows)


def cycling_tests_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_type": ["HSC_MPP", "CD4_naive"],
            "n_condition": [4, 1],
            "n_reference": [3, 4],
            "mean_fraction_condition": [0.31, math.nan],
            "mean_fraction_reference": [0.12, 0.01],
            "difference": [1.2, math.nan],
            "ci_low": [0.6, math.nan],
            "ci_high": [1.8, math.nan],
            "se": [0.25, math.nan],
            "t": [4.8, math.nan],
            "df": [5.0, math.nan],
            "pvalue": [0.004, math.nan],
            "padj": [0.004, math.nan],
            "transform": ["logit", "logit"],
            "method": ["propeller_moderated_t"] * 2,
            "covariates": ["", ""],
            "evidence": ["donor_level", "not_testable"],
            "note": ["", "fewer than 2 donors a side with 10 cells"],
        }
    )


def cycling_fractions_table() -> pd.DataFrame:
    return pd.DataFrame({
        "cell_type": ["HSC_MPP"] * 3, "replicate": ["CB1", "CB2", "AD1"],
        "condition": ["cord_blood", "cord_blood", "adult"], "n_cells": [40, 50, 30],
        "n_cycling": [12, 16, 4], "fraction": [0.3, 0.32, 4 / 30]})  # fmt: skip


def development_axis_table(*, reference: bool) -> pd.DataFrame:
    """Without a reference: score_development's rows (every ontogeny cell type not estimable)."""
    from cordatlas.compare.development import NO_REFERENCE, NO_REFERENCE_NOTE

    if not reference:
        return pd.DataFrame({
            "cell_type": ["HSC_MPP", "erythroid"], "replicate": ["", ""], "condition": ["", ""],
            "n_cells": [0, 0], "axis_score": [math.nan] * 2, "ci_low": [math.nan] * 2,
            "ci_high": [math.nan] * 2, "method": ["not_estimable"] * 2, "n_sets": [2, 1],
            "n_genes": [0, 0], "features": ["", ""], "scale": [NO_REFERENCE] * 2,
            "note": [NO_REFERENCE_NOTE] * 2})  # fmt: skip
    donors = ["CB1", "CB2", "AD1", "AD2"]
    placed = pd.DataFrame({
        "cell_type": ["HSC_MPP"] * 4, "replicate": donors,
        "condition": ["cord_blood", "cord_blood", "adult", "adult"], "n_cells": [40, 50, 30, 35],
        "axis_score": [0.8, 0.7, 0.1, 0.2], "ci_low": [0.7, 0.6, 0.0, 0.1],
        "ci_high": [0.9, 0.8, 0.2, 0.3], "method": ["reference_projection"] * 4,
        "n_sets": [2] * 4, "n_genes": [12] * 4, "features": ["LIN28B,HMGA2"] * 4,
        "scale": ["adult_0_fetal_1"] * 4, "note": [""] * 4})  # fmt: skip
    unplaced = (
        development_axis_table(reference=False)
        .iloc[[1]]
        .assign(scale="too_few_reference_genes", note="2 reference genes (need 5)")
    )
    return pd.concat([placed, unplaced], ignore_index=True)


def development_contrast_table(axis: pd.DataFrame) -> pd.DataFrame:
    from cordatlas.compare.development import development_contrast
    from cordatlas.params import Contrast

    return development_contrast(axis, Contrast(*CONTRAST), min_donors=2)


def de_summary_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_type": ["erythroid", "HSC_MPP"],
            "slug": ["erythroid", "HSC_MPP"],
            "method": ["pseudobulk_deseq2", "cell_level_wilcoxon"],
            "evidence": ["donor_level", "exploratory_no_replication"],
            "note": ["4 and 3 donors: donor-level test", "0 adult donors: exploratory"],
            "n_replicates_condition": [4, 4],
            "n_replicates_reference": [3, 0],
            "n_cells_condition": [132, 107],
            "n_cells_reference": [41, 24],
            "n_genes_tested": [655, 1998],
            "n_significant": [11, 17],
            "n_up": [7, 12],
            "n_down": [4, 5],
        }
    )


def de_genes_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_type": ["erythroid", "erythroid", "HSC_MPP"],
            "gene": ["HBG2", "NA", "LIN28B"],
            "base_mean": [1753.0, 10.0, 3.0],
            "log2FC": [3.31, -0.2, 2.5],
            "lfcSE": [0.2, 0.3, math.nan],
            "stat": [14.9, -0.6, 7.0],
            "pvalue": [3e-50, 0.5, 1e-12],
            "padj": [2.3e-47, 0.9, 1e-9],
            "method": ["pseudobulk_deseq2", "pseudobulk_deseq2", "cell_level_wilcoxon"],
            "evidence": ["donor_level", "donor_level", "exploratory_no_replication"],
            "n_replicates_condition": [4, 4, 4],
            "n_replicates_reference": [3, 3, 0],
            "n_cells_condition": [132, 132, 107],
            "n_cells_reference": [41, 41, 24],
            "covariates": ["", "", ""],
        }
    )


def design_findings_table(*, aliased: bool = False) -> pd.DataFrame:
    rows = [("info", "tissue", f"tissue differs by construction ({INJECTION})")]
    if aliased:
        rows.append(("warning", "aliasing:technology", "condition is aliased with technology"))
    return pd.DataFrame(rows, columns=["severity", "topic", "message"])


def findings(*, aliased: bool = False) -> pd.DataFrame:
    return build_findings(
        composition=composition_table(),
        signatures=signature_table(),
        de_summary=de_summary_table(),
        de_genes=de_genes_table(),
        design_findings=design_findings_table(aliased=aliased),
        alpha=0.05,
        contrast=CONTRAST,
    )


# ---------------------------------------------------------------------------------------------
# Findings
# ---------------------------------------------------------------------------------------------


def test_findings_rows_say_what_the_tables_say():
    table = findings().set_index(["kind", "cell_type", "feature"])
    assert list(findings().columns) == FINDINGS_COLUMNS
    assert table.loc[("composition", "CD4_naive", "proportion"), "call"] == "higher in cord_blood"
    assert table.loc[("composition", "CD4_memory", "proportion"), "call"] == "lower in cord_blood"
    assert table.loc[("composition", "pDC", "proportion"), "call"] == "no difference detected"
    assert table.loc[("composition", "HSC_MPP", "proportion"), "call"] == "not tested"
    nk = table.loc[("signature", "NK_CD56dim", "cytotoxicity")]
    assert (nk["call"], nk["expected"], nk["agreement"]) == ("lower in cord_blood", "down", "agree")
    assert nk["control"].startswith("control flat")
    assert nk["note"] == "quote me"
    assert nk["detail"] == "report/index.html#sig-cytotoxicity"
    erythroid = table.loc[("de", "erythroid", "genes")]
    assert erythroid["call"] == "11 genes differ (7 up, 4 down)"
    assert "HBG2 (+3.31, padj 2.3e-47)" in erythroid["note"]
    assert table.loc[("de", "HSC_MPP", "genes"), "call"] == "ranking only (exploratory)"
    # a ranking's genes below padj are never counted as an effect (a number of findings)
    assert math.isnan(table.loc[("de", "HSC_MPP", "genes"), "effect"])
    assert "a ranking, not findings" in table.loc[("de", "HSC_MPP", "genes"), "note"]


def test_confidence_interval_is_the_t_interval_of_the_table_se_and_df():
    low, high = confidence_interval(0.85, 0.15, 6.0)
    half = stats.t.ppf(0.975, 6) * 0.15
    assert low == pytest.approx(0.85 - half) and high == pytest.approx(0.85 + half)
    assert all(math.isnan(v) for v in confidence_interval(0.5, math.nan, 6.0))
    row = findings().query("kind == 'composition' and cell_type == 'CD4_naive'").iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.85 - half, 0.85 + half))


def test_only_donor_level_differences_are_findings():
    table = findings()
    found = table[is_finding(table)]
    assert set(zip(found["kind"], found["cell_type"], strict=True)) == {
        ("composition", "CD4_naive"),
        ("composition", "CD4_memory"),
        ("signature", "NK_CD56dim"),
        ("de", "erythroid"),
    }


def test_aliased_design_marks_every_row_confounded_and_keeps_the_old_label():
    table = findings(aliased=True)
    assert set(table["evidence"]) == {"confounded"}
    assert not is_finding(table).any()
    row = table.query("kind == 'composition' and cell_type == 'HSC_MPP'").iloc[0]
    assert row["note"].startswith("condition aliased with technology (table's label: not_testable)")
    assert set(table["call"]) == {"not separable from technology"}


def test_a_table_written_before_the_note_column_is_read():
    legacy = signature_table().drop(columns="note")
    legacy["evidence"] = ["donor_level", "not testable: 4 cord_blood and 1 adult replicates"]
    table = build_findings(composition=None, signatures=legacy, de_summary=None, de_genes=None,
                           design_findings=None, alpha=0.05, contrast=CONTRAST)  # fmt: skip
    control = table.set_index("feature").loc["stress_processing_delay"]
    assert control["evidence"] == "not_testable"
    assert control["note"].startswith("not testable: 4 cord_blood")


def test_control_status_in_words():
    row = pd.Series({"role": "biological", "control_difference": 0.3, "control_padj": 0.01})
    assert control_status(row, alpha=0.05).startswith("control differs too")
    assert control_status(pd.Series({"role": "control"}), alpha=0.05) == "this is the control"
    row = pd.Series({"role": "biological", "control_difference": math.nan, "control_padj": 1.0})
    assert control_status(row, alpha=0.05) == "control not available"


# ---------------------------------------------------------------------------------------------
# First screen
# ---------------------------------------------------------------------------------------------


def test_design_verdict_colour_follows_the_findings_severities():
    info = design_findings_table()
    assert study.design_verdict(info, integration=[], de_summary=None).level == study.GREEN
    aliased = design_findings_table(aliased=True)
    verdict = study.design_verdict(aliased, integration=[], de_summary=None)
    assert verdict.level == study.RED and "aliased with technology" in verdict.headline
    integration = pd.DataFrame(
        [("warning", "integration", "the integration key is the condition itself")],
        columns=["severity", "topic", "message"],
    )
    assert study.design_verdict(integration, integration=[], de_summary=None).level == study.AMBER
    assert study.design_verdict(None, integration=[], de_summary=None).level == study.AMBER


def test_a_failed_integration_turns_the_banner_red_and_a_weak_one_amber():
    verdict = pd.DataFrame(
        [("warning", "integration_verdict:failed", "integration failed at resolution 1: only "
          "3% of cells sit in clusters shared by both conditions", "failed")],
        columns=["severity", "topic", "message", "level"],
    )  # fmt: skip
    notes = study.integration_notes(verdict)
    assert notes == [verdict["message"].iloc[0]]
    banner = study.design_verdict(design_findings_table(), integration=notes, de_summary=None)
    assert banner.level == study.RED and "integration failed" in banner.headline
    assert any("only 3% of cells" in p for p in banner.points)
    weak = verdict.assign(message="integration weak at resolution 1: batches mix poorly")
    amber = study.design_verdict(
        design_findings_table(), integration=study.integration_notes(weak), de_summary=None
    )
    assert amber.level == study.AMBER
    good = verdict.assign(severity="info", message="integration good")
    assert study.integration_notes(good) == [] and study.integration_notes(None) == []


def test_synthetic_samples_are_the_ones_under_the_demo_folder():
    sheet = pd.DataFrame({"sample": ["CB1", "real"],
                          "path": ["resources/demo/CB1.h5ad", "data/real.h5ad"]})  # fmt: skip
    assert study.synthetic_samples(sheet, "resources/demo") == ["CB1"]
    assert study.synthetic_samples(sheet, None) == []


def test_read_tsv_keeps_text_as_text(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("gene\tpadj\tnote\nNA\t0.1\t\nHBG2\t\t5\n")
    table = read_tsv(path)
    assert table["gene"].tolist() == ["NA", "HBG2"]
    assert table["padj"].dtype.kind == "f" and math.isnan(table["padj"].iloc[1])
    assert read_tsv(tmp_path / "missing.tsv") is None


# ---------------------------------------------------------------------------------------------
# The page, built from small tables in tmp
# ---------------------------------------------------------------------------------------------


def _write(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False)


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)


def _qc_tables(r: Path, samples: list[str]) -> None:
    _write(r / "qc/qc_summary.tsv", pd.DataFrame({
        "sample": samples, "cells_in": [750, 750], "removed_low_counts": [30, 40],
        "removed_doublet": [40, 40], "removed_total": [70, 80], "cells_out": [680, 670],
        "predicted_doublets": [40, 40], "doublet_threshold": [0.9, 0.8],
        "dropped_sample": [False, False]}))  # fmt: skip
    _write(r / "qc/qc_thresholds.tsv", pd.DataFrame({
        "sample": samples, "metric": ["total_counts"] * 2, "lower": [300.0, 280.0],
        "upper": [6e4, 5e4], "source": ["adaptive"] * 2, "detail": ["median - 5 MAD"] * 2}))  # fmt: skip
    for s in samples:
        _png(r / "qc" / s / "qc.png")
        _png(r / "qc" / s / "species.png")
    # the first sample is a barnyard file (cells called per species), the second single-species
    _write(r / "qc" / samples[0] / "species.tsv", pd.DataFrame({
        "total_counts": [900, 50], "species": ["human", "mouse"], "minority_share": [0.05, 0.02],
        "multiplet": [False, False], "kept": [True, False]}))  # fmt: skip
    _write(r / "qc" / samples[1] / "species.tsv", pd.DataFrame(
        columns=["total_counts", "species", "minority_share", "multiplet", "kept"]))  # fmt: skip
    _png(r / "qc/qc_overview.png")


def _atlas_tables(r: Path) -> None:
    _write(r / "cluster/cluster_sizes.tsv", pd.DataFrame(
        {"resolution": [1.0], "n_clusters": [2], "smallest": [10], "largest": [20]}))  # fmt: skip
    _write(r / "annotate/cluster_labels.tsv", pd.DataFrame({
        "cluster": [0, 1], "n_cells": [20, 10], "cell_type": ["NK_CD56dim", "erythroid"],
        "confidence": [0.99, 0.9], "margin": [1.2, 0.8], "assigned": [True, True]}))  # fmt: skip
    _write(r / "annotate/panel_genes.tsv", pd.DataFrame(
        {"cell_type": ["NK_CD56dim"], "markers_used": ["NKG7,GNLY"]}))  # fmt: skip
    _write(r / "cluster/markers.tsv", pd.DataFrame(
        {"cluster": [0, 1], "rank": [1, 1], "gene": ["NKG7", "HBB"]}))  # fmt: skip
    _write(r / "annotate/marker_evidence.tsv", pd.DataFrame({
        "cluster": [0], "cell_type": ["NK_CD56dim"], "step": ["subtype"], "role": ["top"],
        "marker_set": ["NK_CD56dim"], "score": [1.2], "n_measured": [3], "n_detected": [2],
        "markers_detected": ["NKG7,GNLY"], "markers_not_detected": ["KLRF1"],
        "markers_unmeasured": ["FCGR3A"]}))  # fmt: skip
    _write(r / "annotate/integration_metrics.tsv", pd.DataFrame({
        "resolution": [1.0], "frac_clusters_batch_dominated": [0.0], "knn_batch_entropy": [0.8],
        "knn_batch_entropy_random": [1.0], "cell_type_silhouette": [0.5],
        "cell_type_silhouette_unintegrated": [0.45]}))  # fmt: skip
    for name in ("cluster/umap.png", "annotate/umap_cell_type.png", "annotate/panel_dotplot.png",
                 "cluster/markers_dotplot.png"):  # fmt: skip
        _png(r / name)


def _comparison_tables(r: Path) -> None:
    _write(r / "composition/composition_tests.tsv", composition_table())
    _png(r / "composition/composition.png")
    _write(r / "de/de_summary.tsv", de_summary_table())
    genes = de_genes_table()
    genes.to_csv(r / "de/de_all.tsv.gz", sep="\t", index=False)
    _write(r / "de/pseudobulk/erythroid.tsv", genes[genes["cell_type"] == "erythroid"])
    _write(r / "de/cell_level/HSC_MPP.tsv", genes[genes["cell_type"] == "HSC_MPP"])
    for name in ("pseudobulk/figures/erythroid_volcano", "pseudobulk/figures/erythroid_heatmap",
                 "cell_level/figures/HSC_MPP_volcano"):  # fmt: skip
        _png(r / "de" / f"{name}.png")
    _write(r / "signatures/signature_tests.tsv", signature_table(name=INJECTION))
    _png(r / "signatures/signature_heatmap.png")
    _png(r / "signatures/donors/stress_processing_delay.png")
    _write(r / "enrichment/enrichment.tsv", pd.DataFrame({
        "cell_type": ["erythroid"], "gene_set": [INJECTION], "auc": [0.9], "padj": [0.01],
        "evidence": ["donor_level"], "note": [""]}))  # fmt: skip


def _new_statistics(r: Path, *, reference: bool) -> None:
    """cycling.tsv, cycling_tests.tsv and the development axis with its contrast."""
    _write(r / "signatures/cycling_tests.tsv", cycling_tests_table())
    _write(r / "signatures/cycling.tsv", cycling_fractions_table())
    axis = development_axis_table(reference=reference)
    _write(r / "signatures/development_axis.tsv", axis)
    _write(r / "signatures/development_contrast.tsv", development_contrast_table(axis))
    _png(r / "signatures/development_axis.png")


def write_study(
    tmp: Path, *, truth: bool = False, development: str | None = None
) -> tuple[ReportInputs, dict]:
    """A small study folder with an injection string in every user-controlled field.

    `development`: None writes no cycling or development table (results of an older run),
    ``"no_reference"`` the demo's (axis not estimable), ``"reference"`` an axis with donors.
    """
    r = tmp / "results"
    samples = ["CB1", f"AD1{INJECTION}"]
    sheet = pd.DataFrame({
        "sample": samples, "donor": ["d1", f"d2{INJECTION}"], "condition": list(CONTRAST),
        "tissue": ["cord_blood", INJECTION], "study": [INJECTION] * 2,
        "technology": [INJECTION, "10x"], "sorted_fraction": [INJECTION, "none"],
        "path": ["resources/demo/CB1.h5ad" if truth else "data/CB1.h5ad", "data/AD1.h5ad"]})  # fmt: skip
    _write(tmp / "samples.tsv", sheet)
    _qc_tables(r, ["CB1", samples[1]])
    _write(r / "design/design_findings.tsv", design_findings_table())
    _write(r / "design/design.tsv", pd.DataFrame({"factor": ["tissue"], "level": [INJECTION],
                                                  "condition": ["adult"], "n_samples": [1],
                                                  "n_donors": [1]}))  # fmt: skip
    _atlas_tables(r)
    _comparison_tables(r)
    if development is not None:
        _new_statistics(r, reference=development == "reference")
    table = findings_from_files(
        composition=str(r / "composition/composition_tests.tsv"),
        signatures=str(r / "signatures/signature_tests.tsv"),
        de_summary=str(r / "de/de_summary.tsv"), de_all=str(r / "de/de_all.tsv.gz"),
        design_findings=str(r / "design/design_findings.tsv"), alpha=0.05, contrast=CONTRAST,
        cycling=str(r / "signatures/cycling_tests.tsv"),
        development=str(r / "signatures/development_contrast.tsv"),
    )  # fmt: skip
    table.to_csv(r / "findings.tsv", sep="\t", index=False)
    truth_dir = None
    if truth:
        truth_dir = tmp / "resources/demo/truth"
        _write(truth_dir / "truth_condition_composition.tsv", pd.DataFrame({
            "condition": ["cord_blood", "adult"], "cell_type": ["CD4_naive"] * 2,
            "expected_proportion": [0.23, 0.11]}))  # fmt: skip
    inputs = from_results(r, truth_dir=truth_dir)
    inputs.sheet = str(tmp / "samples.tsv")
    config = {"samples": INJECTION, "contrast": {"condition": CONTRAST[0], "reference": CONTRAST[1]},
              "comparison": {"alpha": 0.05}, "annotation": {"panel": INJECTION},
              "demo": {"outdir": "resources/demo", "seed": 0}, "atlas": {"seed": 0}}  # fmt: skip
    return inputs, config


SECTIONS = ("findings", "design", "qc", "atlas", "composition", "de", "signatures", "cycling",
            "development", "enrichment", "methods", "provenance")  # fmt: skip


def test_report_has_every_section_and_copies_its_figures(tmp_path):
    inputs, config = write_study(tmp_path)
    page = build_report(inputs, tmp_path / "results/report/index.html", config=config)
    html = page.read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}"' in html, anchor
    assert (page.parent / "figures/composition/composition.png").read_bytes() == PNG
    assert 'src="figures/de/pseudobulk/figures/erythroid_volcano.png"' in html
    assert 'href="#de-erythroid"' in html  # a findings row links to its detail
    # results written before the cycling and development-contrast tables: said, not a crash
    assert "Not available: results/signatures/development_axis.tsv" in html
    assert "Not available: results/signatures/cycling_tests.tsv" in html
    assert "https://" not in html.replace("https://itables.org", "")  # nothing to fetch
    assert 'id="synthetic-banner"' not in html  # real paths, no truth tables: not synthetic


def test_synthetic_banner_and_truth_panel_only_with_truth_tables(tmp_path):
    inputs, config = write_study(tmp_path, truth=True)
    html = build_report(inputs, tmp_path / "results/report/index.html", config=config).read_text()
    assert 'id="synthetic-banner"' in html and '<section id="truth"' in html


def test_every_user_string_is_escaped(tmp_path):
    inputs, config = write_study(tmp_path)
    html = build_report(inputs, tmp_path / "results/report/index.html", config=config).read_text()
    assert "window.__pwned" in html  # the strings are shown ...
    assert "<script>window.__pwned" not in html  # ... never as markup
    assert "<img src=x" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html


def test_template_is_shipped_as_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"report/templates/*.j2"' in text
    templates = ROOT / "scripts/cordatlas/report/templates"
    assert {p.name for p in templates.glob("*.j2")} >= {"index.html.j2", "blocks.html.j2"}


def test_volcano_caption_is_valid_restructuredtext():
    import docutils.core

    messages = io.StringIO()
    docutils.core.publish_string(
        (ROOT / "workflow/report/volcano.rst").read_text(),
        writer="html",
        settings_overrides={"warning_stream": messages, "report_level": 1},
    )
    assert messages.getvalue() == ""


def test_species_figures_only_for_mixed_species_samples(tmp_path):
    inputs, config = write_study(tmp_path)
    html = build_report(inputs, tmp_path / "results/report/index.html", config=config).read_text()
    assert "Species calls (barnyard): CB1" in html
    assert "Species calls (barnyard): AD1" not in html  # the single-species sample has none


def test_the_markers_behind_each_label_are_shown(tmp_path):
    inputs, config = write_study(tmp_path)
    html = build_report(inputs, tmp_path / "results/report/index.html", config=config).read_text()
    assert "Markers behind each label" in html
    assert "KLRF1" in html and "FCGR3A" in html  # not detected; never measured


def test_the_liberal_control_flag_and_leave_one_out_reach_the_findings():
    flagged = pd.Series({"role": "biological", "control_difference": 0.9, "control_padj": 0.3,
                         "control_pvalue": 0.08, "control_flag": True,
                         "difference_adjusted": 0.12, "pvalue_adjusted": 0.4})  # fmt: skip
    said = control_status(flagged, alpha=0.05)
    assert said.startswith("control moves too (+0.9, p 0.08): caution")  # padj 0.3 would not
    assert "adjusted for it +0.12 (p 0.4)" in said
    flat = flagged.copy()
    flat["control_flag"] = False
    assert control_status(flat, alpha=0.05).startswith("control flat (+0.9")
    assert leave_one_out(pd.Series({"survives_leave_one_out": True})) == "survives"
    fragile = pd.Series({"survives_leave_one_out": False, "loo_weakest_donor": "CB2",
                         "loo_max_pvalue": 0.12})  # fmt: skip
    assert leave_one_out(fragile) == "fragile without CB2 (p 0.12)"
    assert leave_one_out(pd.Series({"survives_leave_one_out": math.nan})) == ""


def test_de_findings_say_which_hits_may_be_contamination():
    summary = de_summary_table().assign(n_significant_flagged=[3, 0])
    genes = de_genes_table().assign(contamination_flag=[False, False, True])
    table = build_findings(composition=None, signatures=None, de_summary=summary, de_genes=genes,
                           design_findings=None, alpha=0.05, contrast=CONTRAST)  # fmt: skip
    erythroid = table.set_index("cell_type").loc["erythroid", "note"]
    assert "3 of the 11 may come from another cell type or ambient RNA" in erythroid
    assert "HBG2 (+3.31, padj 2.3e-47)" in erythroid  # not flagged: no mark
    hsc = table.set_index("cell_type").loc["HSC_MPP", "note"]
    assert "LIN28B (+2.50, padj 1.0e-09, possible contamination)" in hsc


def test_findings_hold_cycling_and_development_rows_with_their_evidence():
    axis = development_axis_table(reference=True)
    table = build_findings(
        composition=None, signatures=None, de_summary=None, de_genes=None, design_findings=None,
        alpha=0.05, contrast=CONTRAST, cycling=cycling_tests_table(),
        development=development_contrast_table(axis),
    ).set_index(["kind", "cell_type"])  # fmt: skip
    hsc = table.loc[("cycling", "HSC_MPP")]
    assert (hsc["call"], hsc["evidence"]) == ("higher in cord_blood", "donor_level")
    assert (hsc["effect"], hsc["ci_low"], hsc["ci_high"]) == (1.2, 0.6, 1.8)  # the table's CI
    assert hsc["note"] == "mean cycling fraction cord_blood 0.31 vs adult 0.12"
    assert hsc["detail"] == "report/index.html#cycling"
    cd4 = table.loc[("cycling", "CD4_naive")]
    assert (cd4["call"], cd4["evidence"]) == ("not tested", "not_testable")
    assert cd4["note"] == "fewer than 2 donors a side with 10 cells"  # no "nan" means
    # HSC/MPP: cord (0.8, 0.7) vs adult (0.1, 0.2); Welch's t by scipy on the same donors
    welch = stats.ttest_ind([0.8, 0.7], [0.1, 0.2], equal_var=False)
    dev = table.loc[("development", "HSC_MPP")]
    assert dev["effect"] == pytest.approx(0.6)
    assert dev["padj"] == pytest.approx(welch.pvalue)  # the only tested cell type
    low, high = welch.confidence_interval(0.95)
    assert (dev["ci_low"], dev["ci_high"]) == pytest.approx((low, high))
    assert dev["evidence"] == "donor_level" and dev["call"] == "higher in cord_blood"
    ery = table.loc[("development", "erythroid")]
    assert ery["evidence"] == "not_testable" and ery["note"] == "2 reference genes (need 5)"
    kinds = list(dict.fromkeys(table.index.get_level_values("kind")))
    assert kinds == ["cycling", "development"]


def test_cycling_and_development_rows_become_confounded_with_an_aliased_design():
    table = build_findings(
        composition=None, signatures=None, de_summary=None, de_genes=None,
        design_findings=design_findings_table(aliased=True), alpha=0.05, contrast=CONTRAST,
        cycling=cycling_tests_table(),
        development=development_contrast_table(development_axis_table(reference=True)),
    )  # fmt: skip
    assert set(table["kind"]) == {"cycling", "development"}
    assert set(table["evidence"]) == {"confounded"} and not is_finding(table).any()


def test_development_section_says_plainly_the_axis_is_not_estimable(tmp_path):
    inputs, config = write_study(tmp_path, development="no_reference")
    page = build_report(inputs, tmp_path / "results/report/index.html", config=config)
    html = page.read_text()
    section = html.split('<section id="development"', 1)[1].split("</section>", 1)[0]
    assert "The development axis is not estimable in this study (HSC_MPP, erythroid)" in section
    assert "not estimable without an external reference" in section
    assert "<img" not in section  # the empty figure is never shown as a result
    assert not (page.parent / "figures/signatures/development_axis.png").exists()
    findings = read_tsv(tmp_path / "results/findings.tsv")
    development = findings[findings["kind"] == "development"]
    assert set(development["evidence"]) == {"not_testable"}
    assert development["note"].str.startswith("not estimable without an external").all()


def test_development_section_shows_the_contrast_beside_the_axis(tmp_path):
    inputs, config = write_study(tmp_path, development="reference")
    html = build_report(inputs, tmp_path / "results/report/index.html", config=config).read_text()
    section = html.split('<section id="development"', 1)[1].split("</section>", 1)[0]
    assert 'src="figures/signatures/development_axis.png"' in section
    assert 'id="t-development-contrast"' in section and "welch_t_on_donor_projections" in section
    assert "Not estimable: erythroid (2 reference genes (need 5))" in section
    assert "is not estimable in this study" not in section


def test_cycling_section_and_findings_rows_on_the_page(tmp_path):
    inputs, config = write_study(tmp_path, development="no_reference")
    html = build_report(inputs, tmp_path / "results/report/index.html", config=config).read_text()
    section = html.split('<section id="cycling"', 1)[1].split("</section>", 1)[0]
    assert 'id="t-cycling-tests"' in section and 'id="t-cycling-donors"' in section
    assert "propeller_moderated_t" in section
    assert 'href="#cycling"' in html  # the findings row links to the section
    assert "HSC_MPP: cycling fraction higher in cord_blood" in html  # first screen
    assert "Not available: results/signatures/cycling.tsv" not in html


def test_methods_describe_the_axis_cycling_and_numeric_covariates():
    from cordatlas.report.methods import methods_table

    config = {"signatures": {"cycling_min_score": 0.3, "development_min_donors": 2,
                             "development_reference": None},
              "comparison": {"covariates": [{"name": "age_years", "type": "numeric"}]}}  # fmt: skip
    table = methods_table(config).set_index("step")
    assert "signatures.cycling_min_score = 0.3" in table.loc["cycling fraction", "parameters"]
    assert "34-40 %" in table.loc["cycling fraction", "method"]
    assert "Tirosh" in table.loc["cycling fraction", "citation"]
    axis = table.loc["development axis"]
    assert "not estimable without a reference" in axis["method"]
    assert "signatures.development_min_donors = 2" in axis["parameters"]
    assert "age_years" in table.loc["covariates", "parameters"]
    assert "one centred column" in table.loc["covariates", "method"]


def test_sections_of_results_without_cycling_calls_or_a_contrast_table(tmp_path):
    from cordatlas.compare.cycling import cycling_not_scored
    from cordatlas.report import blocks
    from cordatlas.report.comparison import cycling_section, development_section

    page = blocks.Page(out_dir=tmp_path, results_dir=tmp_path, alpha=0.05, contrast=CONTRAST)
    reason = "the library has no set cell_cycle_S"
    cycling = cycling_section(page, cycling_not_scored(["HSC_MPP", "B_naive"], reason), None)
    said = [x["text"] for x in cycling["blocks"] if x["kind"] in ("text", "absent")]
    assert f"No cell type could be tested: {reason}." in said
    assert "Not available: results/signatures/cycling.tsv." in said
    # an axis table from before development_contrast.tsv existed: the axis, the contrast absent
    axis = development_axis_table(reference=True)
    development = development_section(page, axis, None, None)
    said = [x["text"] for x in development["blocks"] if x["kind"] in ("text", "absent")]
    assert "Not available: results/signatures/development_contrast.tsv." in said
    assert not any("is not estimable in this study" in t for t in said)
