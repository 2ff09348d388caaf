# The embedded demo: simulate a cord-vs-adult study with known truth, in several input formats.


rule simulate_demo:
    input:
        # the sheet itself, re-read by the job: a table passed as a param would be pasted raw
        # into Snakemake's report
        sheet=config["samples"],
        schema=str(SCHEMAS / "samples.schema.yaml"),
    output:
        samples=[
            directory(path) if demo_format(path, fmt) == "10x_mtx" else path
            for path, fmt in DEMO_SAMPLES[["path", "format"]]
            .drop_duplicates("path")
            .itertuples(index=False)
        ],
        # truth_samples.tsv among them: per sample, soup share and the donor's planted stress
        truth=DEMO_TRUTH,
    log:
        "logs/simulate_demo/simulate_demo.log",
    benchmark:
        "benchmarks/simulate_demo/simulate_demo.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=30,
    params:
        truth_dir=lambda wc, output: str(Path(output.truth[0]).parent),
        demo=PARAMS.demo,
        contrast=PARAMS.contrast,
    script:
        "../../scripts/simulate_demo.py"
