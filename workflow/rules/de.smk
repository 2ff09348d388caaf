# Differential expression per cell type with donors as the unit (pseudobulk), its exploratory
# cell-level fallback, the summary, and gene-set enrichment in the DE statistics.


rule aggregate_pseudobulk:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
        design=study_path("results/design/design_findings.tsv"),
    output:
        h5ad=study_path("results/de/pseudobulks.h5ad"),
        plan=report(
            study_path("results/de/de_plan.tsv"),
            caption="../report/de_plan.rst",
            category="Differential expression",
        ),
    log:
        study_path("logs/aggregate_pseudobulk/aggregate_pseudobulk.log"),
    benchmark:
        study_path("benchmarks/aggregate_pseudobulk/aggregate_pseudobulk.tsv")
    # the head of the longest chain after annotation (see test_pseudobulk_de)
    priority: 1
    conda:
        "../../envs/scanpy.yaml"
    resources:
        # sums the counts by chunks from the file: peak half the atlas file
        mem_mb=lambda wc, input, attempt: input_mb(input, 1, floor=2000) * attempt,
        runtime=30,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/aggregate_pseudobulk.py"


# The cell types are known only after annotation, so one job per method tests all the plan
# gives it (a folder of per-cell-type files): the job count is fixed when the run starts
# (no checkpoint, no progress count that jumps back) and each job pays its imports once.
rule test_pseudobulk_de:
    input:
        h5ad=study_path("results/de/pseudobulks.h5ad"),
        plan=study_path("results/de/de_plan.tsv"),
        design=study_path("results/design/design_findings.tsv"),
        # the pre-specified family: genes of sets the library expects to change in the cell type
        library=shipped_file(PARAMS.signatures.library),
        extra_sets=list(PARAMS.signatures.extra_sets),
    output:
        # per cell type <slug>: <slug>.tsv, counts/<slug>_counts.tsv.gz,
        # counts/<slug>_pseudobulks.tsv, figures/<slug>_{volcano,heatmap}.png
        folder=report(
            directory(study_path("results/de/pseudobulk")),
            patterns=list(DE_REPORT_PATTERNS.values()),
            caption="../report/pseudobulk_de.rst",
            category="Differential expression",
            subcategory="{cell_type}",
        ),
    log:
        study_path("logs/test_pseudobulk_de/test_pseudobulk_de.log"),
    benchmark:
        study_path("benchmarks/test_pseudobulk_de/test_pseudobulk_de.tsv")
    # the longest chain after annotation (pseudobulks, DE, summary, enrichment, findings):
    # started first
    priority: 1
    conda:
        "../../envs/scanpy.yaml"
    # cell types side by side, one forked worker process per thread; memory measured at 20,000
    # genes, 2 threads: 2.7 GB (PSS, all processes), of which the volcano plot ~1 GB in the
    # parent and each worker's fit ~0.1-0.2 GB beyond what it shares with the parent. On one
    # thread the job took 102.5 s at 100k cells against 44.2 s on two and made the run longer,
    # though a 2-thread job waits for both cores (docs/performance.md)
    threads: 4
    resources:
        mem_mb=lambda wc, input, threads, attempt: input_mb(
            input, 10, floor=2000 + 400 * threads
        )
        * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/test_pseudobulk_de.py"


rule test_cell_level_de:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
        plan=study_path("results/de/de_plan.tsv"),
        design=study_path("results/design/design_findings.tsv"),
    output:
        # per cell type <slug>: <slug>.tsv, figures/<slug>_volcano.png (empty without any)
        folder=report(
            directory(study_path("results/de/cell_level")),
            patterns=[DE_REPORT_PATTERNS["table"], DE_REPORT_PATTERNS["volcano"]],
            caption="../report/cell_level_de.rst",
            category="Differential expression",
            subcategory="{cell_type} (exploratory)",
        ),
    log:
        study_path("logs/test_cell_level_de/test_cell_level_de.log"),
    benchmark:
        study_path("benchmarks/test_cell_level_de/test_cell_level_de.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        # one cell type's cells in memory at a time (read backed from the atlas)
        mem_mb=lambda wc, input, attempt: input_mb(input, 1, floor=2000) * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/test_cell_level_de.py"


rule summarise_de:
    input:
        **DE_FOLDERS,
        plan=study_path("results/de/de_plan.tsv"),
    output:
        summary=report(
            study_path("results/de/de_summary.tsv"),
            caption="../report/de_summary.rst",
            category="Differential expression",
        ),
        table=study_path("results/de/de_all.tsv.gz"),
    log:
        study_path("logs/summarise_de/summarise_de.log"),
    benchmark:
        study_path("benchmarks/summarise_de/summarise_de.tsv")
    localrule: True
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        alpha=PARAMS.comparison.alpha,
    script:
        "../../scripts/summarise_de.py"


rule enrich_de:
    input:
        **DE_FOLDERS,
        table=study_path("results/de/de_all.tsv.gz"),
        plan=study_path("results/de/de_plan.tsv"),
        # test_pseudobulk_de also wrote the counts and metadata CAMERA reads beside each table
        # (counts/<slug>_counts.tsv.gz, counts/<slug>_pseudobulks.tsv)
        library=shipped_file(PARAMS.signatures.library),
        extra_sets=list(PARAMS.signatures.extra_sets),
    output:
        table=report(
            study_path("results/enrichment/enrichment.tsv"),
            caption="../report/enrichment.rst",
            category="Enrichment",
        ),
        figure=report(
            study_path("results/enrichment/enrichment.png"),
            caption="../report/enrichment.rst",
            category="Enrichment",
        ),
    log:
        study_path("logs/enrich_de/enrich_de.log"),
    benchmark:
        study_path("benchmarks/enrich_de/enrich_de.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 10) * attempt,
        runtime=10,
    params:
        enrichment=PARAMS.enrichment,
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
        alpha=PARAMS.comparison.alpha,
    script:
        "../../scripts/enrich_de.py"
