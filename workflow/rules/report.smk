# The study report: the findings table (one row per tested claim) and one self-contained page
# (results/report/index.html, figures beside it) built only from the tables and figures above.


rule collect_findings:
    input:
        composition=study_path("results/composition/composition_tests.tsv"),
        signatures=study_path("results/signatures/signature_tests.tsv"),
        cycling=study_path("results/signatures/cycling_tests.tsv"),
        development=study_path("results/signatures/development_contrast.tsv"),
        de_summary=study_path("results/de/de_summary.tsv"),
        de_all=study_path("results/de/de_all.tsv.gz"),
        design_findings=study_path("results/design/design_findings.tsv"),
        subsets=study_path("results/compartments/subset_composition.tsv"),
        compartments=study_path("results/compartments/compartment_adjusted.tsv"),
    output:
        table=study_path("results/findings.tsv"),
    log:
        study_path("logs/collect_findings/collect_findings.log"),
    benchmark:
        study_path("benchmarks/collect_findings/collect_findings.tsv")
    localrule: True
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        alpha=PARAMS.comparison.alpha,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/collect_findings.py"


rule build_report:
    input:
        sheet=config["samples"],
        panel=shipped_file(PARAMS.annotation.panel),
        extra_panel=optional_file(PARAMS.annotation.extra_panel),
        library=shipped_file(PARAMS.signatures.library),
        extra_sets=list(PARAMS.signatures.extra_sets),
        qc_summary=study_path("results/qc/qc_summary.tsv"),
        qc_thresholds=study_path("results/qc/qc_thresholds.tsv"),
        qc_overview=study_path("results/qc/qc_overview.png"),
        qc_figures=expand(
            study_path("results/qc/{sample}/qc.png"), sample=SAMPLES.index
        ),
        species_figures=expand(
            study_path("results/qc/{sample}/species.png"), sample=SAMPLES.index
        ),
        species_tables=expand(
            study_path("results/qc/{sample}/species.tsv"), sample=SAMPLES.index
        ),
        merge_summary=study_path("results/merge/merge_summary.tsv"),
        design=study_path("results/design/design.tsv"),
        design_findings=study_path("results/design/design_findings.tsv"),
        cluster_sizes=study_path("results/cluster/cluster_sizes.tsv"),
        umap=study_path("results/cluster/umap.png"),
        markers=study_path("results/cluster/markers.tsv"),
        markers_dotplot=study_path("results/cluster/markers_dotplot.png"),
        cluster_labels=study_path("results/annotate/cluster_labels.tsv"),
        panel_genes=study_path("results/annotate/panel_genes.tsv"),
        marker_evidence=study_path("results/annotate/marker_evidence.tsv"),
        umap_cell_type=study_path("results/annotate/umap_cell_type.png"),
        panel_dotplot=study_path("results/annotate/panel_dotplot.png"),
        integration_metrics=study_path("results/annotate/integration_metrics.tsv"),
        integration_verdict=study_path("results/annotate/integration_verdict.tsv"),
        de_summary=study_path("results/de/de_summary.tsv"),
        de_all=study_path("results/de/de_all.tsv.gz"),
        de_plan=study_path("results/de/de_plan.tsv"),
        # the per-cell-type tables and figures in them are listed from the plan by the adapter
        de_pseudobulk=DE_FOLDERS["pseudobulk"],
        de_cell_level=DE_FOLDERS["cell_level"],
        composition_tests=study_path("results/composition/composition_tests.tsv"),
        proportions=study_path("results/composition/proportions.tsv"),
        composition_figure=study_path("results/composition/composition.png"),
        signature_tests=study_path("results/signatures/signature_tests.tsv"),
        signature_heatmap=study_path("results/signatures/signature_heatmap.png"),
        signature_donors=study_path("results/signatures/donors"),
        signature_genes=study_path("results/signatures/signature_genes.tsv"),
        development_table=study_path("results/signatures/development_axis.tsv"),
        development_figure=study_path("results/signatures/development_axis.png"),
        development_contrast=study_path("results/signatures/development_contrast.tsv"),
        cycling_table=study_path("results/signatures/cycling.tsv"),
        cycling_tests=study_path("results/signatures/cycling_tests.tsv"),
        subset_composition=study_path("results/compartments/subset_composition.tsv"),
        compartment_adjusted=study_path("results/compartments/compartment_adjusted.tsv"),
        compartments_figure=study_path("results/compartments/compartments.png"),
        enrichment_table=study_path("results/enrichment/enrichment.tsv"),
        enrichment_figure=study_path("results/enrichment/enrichment.png"),
        findings=study_path("results/findings.tsv"),
        # the simulator's truth: only a study with demo samples has it (synthetic banner)
        truth=DEMO_TRUTH if not DEMO_SAMPLES.empty else [],
    output:
        html=study_path("results/report/index.html"),
        figures=directory(study_path("results/report/figures")),
    log:
        study_path("logs/build_report/build_report.log"),
    benchmark:
        study_path("benchmarks/build_report/build_report.tsv")
    localrule: True
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: 2000 * attempt,
        runtime=20,
    script:
        "../../scripts/build_report.py"
