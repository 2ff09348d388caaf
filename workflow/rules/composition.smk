# Cell-type composition: per-donor proportions and a donor-level test of condition.


rule test_composition:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
        design=study_path("results/design/design_findings.tsv"),
    output:
        proportions=report(
            study_path("results/composition/proportions.tsv"),
            caption="../report/composition.rst",
            category="Composition",
        ),
        tests=report(
            study_path("results/composition/composition_tests.tsv"),
            caption="../report/composition.rst",
            category="Composition",
        ),
        figure=report(
            study_path("results/composition/composition.png"),
            caption="../report/composition.rst",
            category="Composition",
        ),
    log:
        study_path("logs/test_composition/test_composition.log"),
    benchmark:
        study_path("benchmarks/test_composition/test_composition.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 1, floor=2000) * attempt,
        runtime=10,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/test_composition.py"
