# Cell-type composition: per-donor proportions and a donor-level test of condition.


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
    benchmark:
        "benchmarks/test_composition/test_composition.tsv"
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 4) * attempt,
        runtime=10,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/test_composition.py"
