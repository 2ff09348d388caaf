# Cited signatures: per-cell scores, donor-level tests beside the sample-handling control, and
# the fetal-to-adult development axis, the cycling fraction per donor.


rule score_signatures:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
        library=shipped_file(PARAMS.signatures.library),
        extra_sets=list(PARAMS.signatures.extra_sets),
    output:
        cells=study_path("results/signatures/cell_scores.tsv.gz"),
        genes=report(
            study_path("results/signatures/signature_genes.tsv"),
            caption="../report/signature_genes.rst",
            category="Signatures",
        ),
        replicates=study_path("results/signatures/replicate_scores.tsv"),
    log:
        study_path("logs/score_signatures/score_signatures.log"),
    benchmark:
        study_path("benchmarks/score_signatures/score_signatures.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 2, floor=2000) * attempt,
        runtime=30,
    params:
        comparison=PARAMS.comparison,
        signatures=PARAMS.signatures,
        seed=PARAMS.atlas.seed,
    script:
        "../../scripts/score_signatures.py"


rule test_signatures:
    input:
        replicates=study_path("results/signatures/replicate_scores.tsv"),
        # the contamination check: each set's scored genes summed in every cell type's pseudobulks
        genes=study_path("results/signatures/signature_genes.tsv"),
        pseudobulks=study_path("results/de/pseudobulks.h5ad"),
        h5ad=study_path("results/annotate/annotated.h5ad"),
        design=study_path("results/design/design_findings.tsv"),
        library=shipped_file(PARAMS.signatures.library),
        extra_sets=list(PARAMS.signatures.extra_sets),
    output:
        tests=report(
            study_path("results/signatures/signature_tests.tsv"),
            caption="../report/signature_tests.rst",
            category="Signatures",
        ),
        heatmap=report(
            study_path("results/signatures/signature_heatmap.png"),
            caption="../report/signature_tests.rst",
            category="Signatures",
        ),
        donors=report(
            directory(study_path("results/signatures/donors")),
            patterns=["{signature}.png"],
            caption="../report/signature_donors.rst",
            category="Signatures",
            subcategory="Per donor",
        ),
    log:
        study_path("logs/test_signatures/test_signatures.log"),
    benchmark:
        study_path("benchmarks/test_signatures/test_signatures.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 1, floor=2000) * attempt,
        runtime=20,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
        signatures=PARAMS.signatures,
    script:
        "../../scripts/test_signatures.py"


rule score_development:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
        design=study_path("results/design/design_findings.tsv"),
        library=shipped_file(PARAMS.signatures.library),
        extra_sets=list(PARAMS.signatures.extra_sets),
        reference=optional_file(PARAMS.signatures.development_reference),
    output:
        table=report(
            study_path("results/signatures/development_axis.tsv"),
            caption="../report/development_axis.rst",
            category="Signatures",
        ),
        contrast=report(
            study_path("results/signatures/development_contrast.tsv"),
            caption="../report/development_axis.rst",
            category="Signatures",
        ),
        figure=report(
            study_path("results/signatures/development_axis.png"),
            caption="../report/development_axis.rst",
            category="Signatures",
        ),
    log:
        study_path("logs/score_development/score_development.log"),
    benchmark:
        study_path("benchmarks/score_development/score_development.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 2, floor=2000) * attempt,
        runtime=20,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
        signatures=PARAMS.signatures,
    script:
        "../../scripts/score_development.py"


rule score_cycling:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
        design=study_path("results/design/design_findings.tsv"),
        library=shipped_file(PARAMS.signatures.library),
        extra_sets=list(PARAMS.signatures.extra_sets),
    output:
        fractions=report(
            study_path("results/signatures/cycling.tsv"),
            caption="../report/cycling.rst",
            category="Signatures",
        ),
        tests=report(
            study_path("results/signatures/cycling_tests.tsv"),
            caption="../report/cycling.rst",
            category="Signatures",
        ),
    log:
        study_path("logs/score_cycling/score_cycling.log"),
    benchmark:
        study_path("benchmarks/score_cycling/score_cycling.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 2, floor=2000) * attempt,
        runtime=20,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
        signatures=PARAMS.signatures,
        seed=PARAMS.atlas.seed,
    script:
        "../../scripts/score_cycling.py"
