# The cord-vs-adult comparison per cell type, donors as the unit: pseudobulk expression,
# composition, signatures, development axis, enrichment.


checkpoint aggregate_pseudobulk:
    input:
        h5ad="results/atlas.h5ad",
    output:
        h5ad="results/de/pseudobulks.h5ad",
        plan=report(
            "results/de/de_plan.tsv",
            caption="../report/de_plan.rst",
            category="Differential expression",
        ),
    log:
        "logs/aggregate_pseudobulk/aggregate_pseudobulk.log",
    benchmark:
        "benchmarks/aggregate_pseudobulk/aggregate_pseudobulk.tsv"
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 8) * attempt,
        runtime=30,
    params:
        comparison=config["comparison"],
        contrast=CONTRAST,
    script:
        "../../scripts/aggregate_pseudobulk.py"


rule test_pseudobulk_de:
    input:
        h5ad="results/de/pseudobulks.h5ad",
        plan="results/de/de_plan.tsv",
    output:
        table=report(
            "results/de/pseudobulk/{cell_type}.tsv",
            caption="../report/pseudobulk_de.rst",
            category="Differential expression",
            subcategory="{cell_type}",
        ),
        counts="results/de/pseudobulk/counts/{cell_type}_counts.tsv.gz",
        pseudobulks="results/de/pseudobulk/counts/{cell_type}_pseudobulks.tsv",
        volcano=report(
            "results/de/pseudobulk/figures/{cell_type}_volcano.png",
            caption="../report/volcano.rst",
            category="Differential expression",
            subcategory="{cell_type}",
        ),
        heatmap=report(
            "results/de/pseudobulk/figures/{cell_type}_heatmap.png",
            caption="../report/de_heatmap.rst",
            category="Differential expression",
            subcategory="{cell_type}",
        ),
    log:
        "logs/test_pseudobulk_de/{cell_type}.log",
    benchmark:
        "benchmarks/test_pseudobulk_de/{cell_type}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 10) * attempt,
        runtime=60,
    params:
        comparison=config["comparison"],
        contrast=CONTRAST,
    script:
        "../../scripts/test_pseudobulk_de.py"


rule test_cell_level_de:
    input:
        h5ad="results/atlas.h5ad",
        plan="results/de/de_plan.tsv",
    output:
        table=report(
            "results/de/cell_level/{cell_type}.tsv",
            caption="../report/cell_level_de.rst",
            category="Differential expression",
            subcategory="{cell_type} (exploratory)",
        ),
        volcano=report(
            "results/de/cell_level/figures/{cell_type}_volcano.png",
            caption="../report/cell_level_de.rst",
            category="Differential expression",
            subcategory="{cell_type} (exploratory)",
        ),
    log:
        "logs/test_cell_level_de/{cell_type}.log",
    benchmark:
        "benchmarks/test_cell_level_de/{cell_type}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 8) * attempt,
        runtime=30,
    params:
        comparison=config["comparison"],
        contrast=CONTRAST,
    script:
        "../../scripts/test_cell_level_de.py"


rule summarise_de:
    input:
        plan="results/de/de_plan.tsv",
        tables=de_tables,
    output:
        summary=report(
            "results/de/de_summary.tsv",
            caption="../report/de_summary.rst",
            category="Differential expression",
        ),
        table="results/de/de_all.tsv.gz",
    log:
        "logs/summarise_de/summarise_de.log",
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        alpha=config["comparison"]["alpha"],
    script:
        "../../scripts/summarise_de.py"


rule test_composition:
    input:
        h5ad="results/atlas.h5ad",
    output:
        proportions=report(
            "results/composition/proportions.tsv",
            caption="../report/composition.rst",
            category="Composition",
        ),
        tests=report(
            "results/composition/composition_tests.tsv",
            caption="../report/composition.rst",
            category="Composition",
        ),
        figure=report(
            "results/composition/composition.png",
            caption="../report/composition.rst",
            category="Composition",
        ),
    log:
        "logs/test_composition/test_composition.log",
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 4) * attempt,
        runtime=10,
    params:
        comparison=config["comparison"],
        contrast=CONTRAST,
    script:
        "../../scripts/test_composition.py"


rule score_signatures:
    input:
        h5ad="results/atlas.h5ad",
        library=shipped_file(config["signatures"]["library"]),
        extra_sets=config["signatures"]["extra_sets"],
    output:
        cells="results/signatures/cell_scores.tsv.gz",
        genes=report(
            "results/signatures/signature_genes.tsv",
            caption="../report/signature_genes.rst",
            category="Signatures",
        ),
        replicates="results/signatures/replicate_scores.tsv",
    log:
        "logs/score_signatures/score_signatures.log",
    benchmark:
        "benchmarks/score_signatures/score_signatures.tsv"
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 8) * attempt,
        runtime=30,
    params:
        comparison=config["comparison"],
        min_genes=config["signatures"]["min_genes"],
        seed=config["atlas"]["seed"],
    script:
        "../../scripts/score_signatures.py"


rule test_signatures:
    input:
        replicates="results/signatures/replicate_scores.tsv",
        h5ad="results/atlas.h5ad",
        library=shipped_file(config["signatures"]["library"]),
        extra_sets=config["signatures"]["extra_sets"],
    output:
        tests=report(
            "results/signatures/signature_tests.tsv",
            caption="../report/signature_tests.rst",
            category="Signatures",
        ),
        heatmap=report(
            "results/signatures/signature_heatmap.png",
            caption="../report/signature_tests.rst",
            category="Signatures",
        ),
        donors=report(
            directory("results/signatures/donors"),
            patterns=["{signature}.png"],
            caption="../report/signature_donors.rst",
            category="Signatures",
            subcategory="Per donor",
        ),
    log:
        "logs/test_signatures/test_signatures.log",
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 4) * attempt,
        runtime=20,
    params:
        comparison=config["comparison"],
        contrast=CONTRAST,
    script:
        "../../scripts/test_signatures.py"


rule score_development:
    input:
        replicates="results/signatures/replicate_scores.tsv",
        genes="results/signatures/signature_genes.tsv",
        h5ad="results/atlas.h5ad",
        library=shipped_file(config["signatures"]["library"]),
        extra_sets=config["signatures"]["extra_sets"],
        reference=optional_file(config["signatures"]["development_reference"]),
    output:
        table=report(
            "results/signatures/development_axis.tsv",
            caption="../report/development_axis.rst",
            category="Signatures",
        ),
        figure=report(
            "results/signatures/development_axis.png",
            caption="../report/development_axis.rst",
            category="Signatures",
        ),
    log:
        "logs/score_development/score_development.log",
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 8) * attempt,
        runtime=20,
    params:
        comparison=config["comparison"],
        contrast=CONTRAST,
    script:
        "../../scripts/score_development.py"


rule enrich_de:
    input:
        table="results/de/de_all.tsv.gz",
        library=shipped_file(config["signatures"]["library"]),
        extra_sets=config["signatures"]["extra_sets"],
    output:
        table=report(
            "results/enrichment/enrichment.tsv",
            caption="../report/enrichment.rst",
            category="Enrichment",
        ),
        figure=report(
            "results/enrichment/enrichment.png",
            caption="../report/enrichment.rst",
            category="Enrichment",
        ),
    log:
        "logs/enrich_de/enrich_de.log",
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        enrichment=config["enrichment"],
        alpha=config["comparison"]["alpha"],
    script:
        "../../scripts/enrich_de.py"
