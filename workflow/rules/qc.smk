# Per-sample quality control (results/qc/{sample}/), then one summary across samples.


rule qc_sample:
    input:
        h5ad=study_path("results/ingest/{sample}.h5ad"),
    output:
        h5ad=study_path("results/qc/{sample}/qc.h5ad"),
        cells=study_path("results/qc/{sample}/cells.tsv"),
        thresholds=study_path("results/qc/{sample}/thresholds.tsv"),
        summary=study_path("results/qc/{sample}/summary.tsv"),
    log:
        study_path("logs/qc_sample/{sample}.log"),
    benchmark:
        study_path("benchmarks/qc_sample/{sample}.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        # peak 26 times the (uncompressed) ingest file at 3,100 cells x 20,000 genes: the doublet
        # classifier's artificial doublets and features (docs/performance.md)
        mem_mb=lambda wc, input, attempt: input_mb(input, 30) * attempt,
        runtime=60,
    params:
        qc=PARAMS.qc,
        fixed=lambda wc: {
            k: sample_row(wc)[k]
            for k in (
                "min_counts",
                "max_counts",
                "min_genes",
                "max_genes",
                "max_pct_counts_mt",
            )
        },
        seed=PARAMS.atlas.seed,
        # the sheet's per-sample choice (fail, drop, keep) or config qc.on_small_sample: editing
        # one row reruns only that sample's QC
        on_small_sample=lambda wc: sample_row(wc).get("on_small_sample")
        or PARAMS.qc.on_small_sample,
    script:
        "../../scripts/qc_sample.py"


rule summarise_qc:
    input:
        summaries=expand(
            study_path("results/qc/{sample}/summary.tsv"), sample=SAMPLES.index
        ),
        thresholds=expand(
            study_path("results/qc/{sample}/thresholds.tsv"), sample=SAMPLES.index
        ),
    output:
        summary=report(
            study_path("results/qc/qc_summary.tsv"),
            caption="../report/qc_summary.rst",
            category="Quality control",
        ),
        thresholds=report(
            study_path("results/qc/qc_thresholds.tsv"),
            caption="../report/qc_thresholds.rst",
            category="Quality control",
        ),
    log:
        study_path("logs/summarise_qc/summarise_qc.log"),
    benchmark:
        study_path("benchmarks/summarise_qc/summarise_qc.tsv")
    localrule: True
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        min_cells=PARAMS.qc.min_cells_per_sample,
    script:
        "../../scripts/summarise_qc.py"


rule plot_qc_sample:
    input:
        cells=study_path("results/qc/{sample}/cells.tsv"),
        thresholds=study_path("results/qc/{sample}/thresholds.tsv"),
    output:
        report(
            study_path("results/qc/{sample}/qc.png"),
            caption="../report/qc_sample.rst",
            category="Quality control",
            subcategory="Per sample",
            labels={"sample": "{sample}"},
        ),
    log:
        study_path("logs/plot_qc_sample/{sample}.log"),
    benchmark:
        study_path("benchmarks/plot_qc_sample/{sample}.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/plot_qc_sample.py"


rule plot_qc_overview:
    input:
        cells=expand(study_path("results/qc/{sample}/cells.tsv"), sample=SAMPLES.index),
    output:
        report(
            study_path("results/qc/qc_overview.png"),
            caption="../report/qc_overview.rst",
            category="Quality control",
            labels={"figure": "cells kept and removed"},
        ),
    log:
        study_path("logs/plot_qc_overview/plot_qc_overview.log"),
    benchmark:
        study_path("benchmarks/plot_qc_overview/plot_qc_overview.tsv")
    localrule: True
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/plot_qc_overview.py"
