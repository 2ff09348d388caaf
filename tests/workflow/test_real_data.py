"""The real Snakefile on real public counts: cord blood Drop-seq (GEO csv) + adult 10x PBMC + adult ICA marrow."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from cordatlas.io.download import cache_path, file_sha256

from .conftest import run_snakemake

pytestmark = pytest.mark.workflow

#: Where a sheet named real_samples.tsv writes (config study_dir null): its own folder.
STUDY = "studies/real_samples"


@pytest.fixture(scope="module")
def real_run(demo_run: Path, shared_data: Path) -> Path:
    """The real sheet run in the folder where the demo already ran (as a new user would)."""
    workdir = demo_run
    pbmc = shared_data / "adult_pbmc_10x_donorA_mudan/pbmcA_adult.h5ad"
    rows = [
        {
            "sample": "CBMC_CD8",
            "donor": "GSE100866_cord",
            "condition": "cord_blood",
            "tissue": "cord_blood",
            "study": "GSE100866",
            "technology": "dropseq",
            "sorted_fraction": "CD8-gated",
            "format": "delimited",
            "path": shared_data
            / "cord_cbmc_cd8gated_dropseq_gse100866/GSE100866_CD8_merged-RNA_umi.csv.gz",
            "barcode_pattern": "",
        },
        {
            "sample": "PBMC_A",
            "donor": "frozen_donor_A",
            "condition": "adult",
            "tissue": "peripheral_blood",
            "study": "Zheng2017",
            "technology": "10x_3prime_v1",
            "sorted_fraction": "none",
            "format": "h5ad",
            # given by url so the run exercises download_sample (cache, sha256, atomic write)
            "url": pbmc.as_uri(),
            "sha256": file_sha256(pbmc),
            "barcode_pattern": "",
        },
        {
            "sample": "BM1",
            "donor": "MantonBM1",
            "condition": "adult",
            "tissue": "bone_marrow",
            "study": "ICA",
            "technology": "10x_3prime_v2",
            "sorted_fraction": "none",
            "format": "auto",
            "path": shared_data / "adult_bm_ica_bm1_50cells_pagoda2/ica_bm1_50cells_adult.h5ad",
            "barcode_pattern": "^MantonBM1_",
        },
    ]
    pd.DataFrame(rows).to_csv(workdir / "config/real_samples.tsv", sep="\t", index=False)
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config["samples"] = "config/real_samples.tsv"
    # the ICA extract holds 50 cells: allow a small sample rather than stopping
    config["qc"]["min_cells_per_sample"] = 20
    (workdir / REAL_CONFIG).write_text(yaml.safe_dump(config))
    run_snakemake(workdir, "--cores", "2", "--configfile", REAL_CONFIG)
    return workdir


REAL_CONFIG = "config/real_config.yaml"


def test_every_sample_ingested_with_its_real_size(real_run):
    sizes = {}
    for sample in ("CBMC_CD8", "PBMC_A", "BM1"):
        adata = ad.read_h5ad(real_run / STUDY / f"results/ingest/{sample}.h5ad")
        sizes[sample] = adata.shape
        assert np.allclose(adata.X.data, np.round(adata.X.data))
    assert sizes["CBMC_CD8"] == (1774, 11757)
    assert sizes["PBMC_A"][0] == 2896
    assert sizes["BM1"][0] == 50
    sheet = pd.read_csv(real_run / "config/real_samples.tsv", sep="\t").set_index("sample")
    cached = real_run / cache_path(sheet.loc["PBMC_A", "url"], Path("resources/downloads"))
    assert file_sha256(cached) == sheet.loc["PBMC_A", "sha256"]


def test_thresholds_differ_per_sample_and_are_reported(real_run):
    summary = pd.read_csv(real_run / STUDY / "results/qc/qc_summary.tsv", sep="\t").set_index(
        "sample"
    )
    assert set(summary.index) == {"CBMC_CD8", "PBMC_A", "BM1"}
    assert (summary["cells_out"] > 0).all()
    assert (summary["cells_out"] + summary["removed_total"] == summary["cells_in"]).all()
    # low-depth Drop-seq and 10x get their own adaptive bounds
    for bound in ("total_counts_lower", "total_counts_upper", "pct_counts_mt_upper"):
        assert summary[bound].nunique() == 3, bound
    thresholds = pd.read_csv(real_run / STUDY / "results/qc/qc_thresholds.tsv", sep="\t")
    bm_doublets = thresholds.query("sample == 'BM1' and metric == 'doublet_score'")
    assert "not called" in bm_doublets["detail"].iloc[0]  # 50 cells: too few for scrublet, said so


def test_atlas_joins_the_real_gene_universes(real_run):
    atlas = ad.read_h5ad(real_run / STUDY / "results/atlas.h5ad")
    merge = pd.read_csv(real_run / STUDY / "results/merge/merge_summary.tsv", sep="\t").set_index(
        "quantity"
    )
    # Drop-seq and 10x measure different genes: the outer join keeps them, flagged per sample
    assert int(merge.loc["genes_measured_in_all_samples", "value"]) < atlas.n_vars
    assert atlas.n_vars == int(merge.loc["genes_kept", "value"])
    unmeasured = atlas.uns["unmeasured_genes"]
    assert set(unmeasured) == {"CBMC_CD8", "PBMC_A", "BM1"}
    assert all(len(genes) > 0 for genes in unmeasured.values())
    # IGHD/IGHM (naive B cells) survive the join although not every sample measured them
    assert {"IGHD", "IGHM"} <= set(atlas.var_names)
    assert set(atlas.obs["condition"]) == {"cord_blood", "adult"}
    assert set(atlas.obs["sample"]) == {"CBMC_CD8", "PBMC_A", "BM1"}
    assert "X_umap" in atlas.obsm
    assert atlas.obs["leiden"].nunique() >= 3


def test_design_check_flags_aliasing_and_missing_replication(real_run):
    findings = pd.read_csv(real_run / STUDY / "results/design/design_findings.tsv", sep="\t")
    warnings = set(findings.query("severity == 'warning'")["topic"])
    # one technology and one study per condition: Drop-seq cord vs 10x adult
    assert {"aliasing:technology", "aliasing:study", "replication:cord_blood"} <= warnings
    assert "replication:adult" not in warnings  # two adult donors


def test_adult_pbmc_resolves_into_t_nk_b_and_monocytes(real_run):
    atlas = ad.read_h5ad(real_run / STUDY / "results/atlas.h5ad")
    labels = atlas.obs.loc[atlas.obs["sample"] == "PBMC_A", "cell_type"].astype(str)
    groups = {
        "T": ("CD4_", "CD8_", "Treg", "MAIT", "gamma_delta", "T_lineage"),
        "NK": ("NK_",),
        "B": ("B_",),
        "monocyte": ("CD14_monocyte", "CD16_monocyte", "myeloid_lineage"),
    }
    shares = {group: labels.str.startswith(prefixes).mean() for group, prefixes in groups.items()}
    assert all(share >= 0.02 for share in shares.values()), shares
    assert sum(shares.values()) >= 0.8, shares


def test_comparison_is_confounded_and_unreplicated_everywhere(real_run):
    """Drop-seq cord vs 10x adult, one cord donor: every row of every table says confounded."""
    study = real_run / STUDY
    plan = pd.read_csv(study / "results/de/de_plan.tsv", sep="\t", keep_default_na=False)
    assert set(plan["method"]) <= {"cell_level_wilcoxon", "not_tested"}
    assert "cell_level_wilcoxon" in set(plan["method"])
    assert set(plan["evidence"]) == {"confounded"}
    # the plan's note keeps why the test was cell-level in the first place
    tested = plan[plan["method"] == "cell_level_wilcoxon"]
    assert tested["note"].str.contains("table's label: exploratory_no_replication").all()
    assert not list((study / "results/de/pseudobulk").glob("*.tsv"))
    de = pd.read_csv(study / "results/de/de_all.tsv.gz", sep="\t")
    assert len(de) > 0
    assert (de["evidence"] == "confounded").all()
    assert (de["method"] == "cell_level_wilcoxon").all()
    log = "".join(p.read_text() for p in (study / "logs/test_cell_level_de").glob("*.log"))
    assert "not donor-level evidence" in log or "no biological replication" in log
    composition = pd.read_csv(study / "results/composition/composition_tests.tsv", sep="\t")
    assert composition["pvalue"].isna().all()
    assert (composition["evidence"] == "confounded").all()
    assert composition["note"].str.contains("table's label: not_testable").all()
    signatures = pd.read_csv(study / "results/signatures/signature_tests.tsv", sep="\t")
    assert signatures["pvalue"].isna().all()
    assert (signatures["evidence"] == "confounded").all()
    assert set(signatures["concordance"]) == {"not_testable"}
    enrichment = pd.read_csv(study / "results/enrichment/enrichment.tsv", sep="\t")
    assert (enrichment["evidence"] == "confounded").all()
    # thousands of cell-level "hits" are never counted as findings
    findings = pd.read_csv(study / "results/findings.tsv", sep="\t")
    de_rows = findings[findings["kind"] == "de"]
    assert de_rows["effect"].isna().all()
    assert de_rows["note"].str.contains("a ranking, not findings").all()


def test_a_second_study_never_sees_the_demo(real_run):
    """The demo ran first in this folder: the real study reads, lists and reports none of it."""
    study = real_run / STUDY
    assert (real_run / "results/atlas.h5ad").exists()  # the demo's outputs are still there
    assert (study / "results/atlas.h5ad").exists()
    summary = run_snakemake(real_run, "--configfile", REAL_CONFIG, "--summary").stdout
    listed = [line.split("\t")[0] for line in summary.splitlines()[1:] if line.strip()]
    assert listed, summary[:2000]
    foreign = [p for p in listed if not p.startswith((f"{STUDY}/", "resources/downloads/"))]
    assert foreign == [], foreign[:10]
    report = study / "report.html"
    run_snakemake(real_run, "--configfile", REAL_CONFIG, "--report", str(report))
    html = report.read_text(errors="replace")
    for demo_only in ("resources/demo", "truth_cells", '"results/atlas.h5ad"', "SYNTHETIC"):
        assert demo_only not in html, demo_only


def test_failed_integration_is_said_in_findings_log_and_report(real_run):
    """Drop-seq cord vs 10x adult: cord and adult cells never share a cluster, and we say so."""
    study = real_run / STUDY
    verdict = pd.read_csv(study / "results/annotate/integration_verdict.tsv", sep="\t")
    row = verdict.iloc[0]
    assert (row["severity"], row["level"]) == ("warning", "failed")
    assert "of cells sit in clusters shared by both conditions" in row["message"]
    log = (study / "logs/evaluate_integration/evaluate_integration.log").read_text()
    assert "integration failed at resolution" in log
    html = (study / "results/report/index.html").read_text()
    assert "integration failed at resolution" in html
