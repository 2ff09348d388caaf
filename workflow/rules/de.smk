# Differential expression per cell type with donors as the unit (pseudobulk), its exploratory
# cell-level fallback, the summary, and gene-set enrichment in the DE statistics.


checkpoint aggregate_pseudobulk:
    input:
        h5ad=study_path("results/atlas.h5ad"),
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
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 8) * attempt,
        runtime=30,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/aggregate_pseudobulk.py"


rule test_pseudobulk_de:
    input:
        h5ad=study_path("results/de/pseudobulks.h5ad"),
        plan=study_path("results/de/de_plan.tsv"),
        design=study_path("results/design/design_findings.tsv"),
        # the pre-specified family: genes of sets the library expects to change in the cell type
        library=shipped_file(PARAMS.signatures.library),
        extra_sets=list(PARAMS.signatures.extra_sets),
    output:
        table=report(
            study_path("results/de/pseudobulk/{cell_type}.tsv"),
            caption="../report/pseudobulk_de.rst",
            category="Differential expression",
            subcategory="{cell_type}",
        ),
        counts=study_path("results/de/pseudobulk/counts/{cell_type}_counts.tsv.gz"),
        pseudobulks=study_path(
            "results/de/pseudobulk/counts/{cell_type}_pseudobulks.tsv"
        ),
        volcano=report(
            study_path("results/de/pseudobulk/figures/{cell_type}_volcano.png"),
            caption="../report/volcano.rst",
            category="Differential expression",
            subcategory="{cell_type}",
        ),
        heatmap=report(
            study_path("results/de/pseudobulk/figures/{cell_type}_heatmap.png"),
            caption="../report/de_heatmap.rst",
            category="Differential expression",
            subcategory="{cell_type}",
        ),
    log:
        study_path("logs/test_pseudobulk_de/{cell_type}.log"),
    benchmark:
        study_path("benchmarks/test_pseudobulk_de/{cell_type}.tsv")
    conda:
        "../../envs/scanpy.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 10) * attempt,
        runtime=60,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/test_pseudobulk_de.py"


rule test_cell_level_de:
    input:
        h5ad=study_path("results/atlas.h5ad"),
        plan=study_path("results/de/de_plan.tsv"),
        design=study_path("results/design/design_findings.tsv"),
    output:
        table=report(
            study_path("results/de/cell_level/{cell_type}.tsv"),
            caption="../report/cell_level_de.rst",
            category="Differential expression",
            subcategory="{cell_type} (exploratory)",
        ),
        volcano=report(
            study_path("results/de/cell_level/figures/{cell_type}_volcano.png"),
            caption="../report/cell_level_de.rst",
            category="Differential expression",
            subcategory="{cell_type} (exploratory)",
        ),
    log:
        study_path("logs/test_cell_level_de/{cell_type}.log"),
    benchmark:
        study_path("benchmarks/test_cell_level_de/{cell_type}.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 8) * attempt,
        runtime=30,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/test_cell_level_de.py"


rule summarise_de:
    input:
        plan=study_path("results/de/de_plan.tsv"),
        tables=de_tables,
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
        table=study_path("results/de/de_all.tsv.gz"),
        # each pseudobulk table's job also wrote the counts and metadata CAMERA reads
        # (counts/{cell_type}_counts.tsv.gz, counts/{cell_type}_pseudobulks.tsv beside it)
        tables=de_tables,
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
