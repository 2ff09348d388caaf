# Within-lineage comparisons: subtype shares per donor (HSPC subsets, naive/memory T ...) and
# signature scores standardised to one compartment mix.


rule test_compartments:
    input:
        h5ad=study_path("results/annotate/annotated.h5ad"),
        scores=study_path("results/signatures/cell_scores.tsv.gz"),
        panel=shipped_file(PARAMS.annotation.panel),
        extra_panel=optional_file(PARAMS.annotation.extra_panel),
        design=study_path("results/design/design_findings.tsv"),
    output:
        subsets=report(
            study_path("results/compartments/subset_composition.tsv"),
            caption="../report/compartments.rst",
            category="Compartments",
        ),
        adjusted=report(
            study_path("results/compartments/compartment_adjusted.tsv"),
            caption="../report/compartments.rst",
            category="Compartments",
        ),
        figure=report(
            study_path("results/compartments/compartments.png"),
            caption="../report/compartments.rst",
            category="Compartments",
        ),
    log:
        study_path("logs/test_compartments/test_compartments.log"),
    benchmark:
        study_path("benchmarks/test_compartments/test_compartments.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 1, floor=2000) * attempt,
        runtime=10,
    params:
        comparison=PARAMS.comparison,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/test_compartments.py"
