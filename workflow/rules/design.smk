# Design checks before integration: is condition confounded with study, technology, tissue ...?


rule check_design:
    input:
        qc_summary=study_path("results/qc/qc_summary.tsv"),
        # the sheet itself, re-read by the job: a table passed as a param would be pasted raw
        # into Snakemake's report
        sheet=config["samples"],
        schema=str(SCHEMAS / "samples.schema.yaml"),
    output:
        table=report(
            study_path("results/design/design.tsv"),
            caption="../report/design.rst",
            category="Study design",
        ),
        findings=report(
            study_path("results/design/design_findings.tsv"),
            caption="../report/design_findings.rst",
            category="Study design",
        ),
    log:
        study_path("logs/check_design/check_design.log"),
    benchmark:
        study_path("benchmarks/check_design/check_design.tsv")
    # the DE chain's first input (see test_pseudobulk_de)
    priority: 1
    localrule: True
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    params:
        contrast=PARAMS.contrast,
        comparison=PARAMS.comparison,
        batch_key=lambda wc: (
            PARAMS.atlas.integration_key
            if PARAMS.atlas.integration != "none"
            else None
        ),
    script:
        "../../scripts/check_design.py"
