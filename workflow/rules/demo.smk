# The embedded demo: simulate a cord-vs-adult study with known truth, in several input formats.


rule simulate_demo:
    output:
        samples=[
            directory(path) if demo_format(path, fmt) == "10x_mtx" else path
            for path, fmt in DEMO_SAMPLES[["path", "format"]]
            .drop_duplicates("path")
            .itertuples(index=False)
        ],
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
        samples=DEMO_SAMPLES,
        truth_dir=lambda wc, output: str(Path(output.truth[0]).parent),
        seed=config["demo"]["seed"],
        n_cells_per_sample=config["demo"]["n_cells_per_sample"],
        n_genes=config["demo"]["n_genes"],
        condition_effect=config["demo"]["condition_effect"],
        contrast=(config["contrast"]["condition"], config["contrast"]["reference"]),
    script:
        "../../scripts/simulate_demo.py"
