# Bring each sample's raw counts into one h5ad: download (url rows), read any public format.


rule download_sample:
    output:
        f"{DOWNLOAD_DIR}/{{url_hash}}/{{filename}}",
    log:
        "logs/download_sample/{url_hash}_{filename}.log",
    benchmark:
        "benchmarks/download_sample/{url_hash}_{filename}.tsv"
    wildcard_constraints:
        url_hash="[0-9a-f]+",
        filename="[^/]+",
    # fetch_url retries transient errors itself; a job-level retry (this rule's or a profile's
    # --retries, which 0 here overrides) would repeat final ones (HTTP 404, a wrong sha256) and
    # fetch a large file several times.
    retries: 0
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=500,
        runtime=120,
    params:
        url=lambda wc: URL_OF_CACHE[f"{DOWNLOAD_DIR}/{wc.url_hash}/{wc.filename}"],
        sha256=lambda wc: SAMPLES.loc[
            SAMPLES["url"]
            == URL_OF_CACHE[f"{DOWNLOAD_DIR}/{wc.url_hash}/{wc.filename}"],
            "sha256",
        ]
        .dropna()
        .unique()
        .tolist(),
    script:
        "../../scripts/download_sample.py"


rule ingest_sample:
    input:
        counts=sample_source,
    output:
        h5ad=study_path("results/ingest/{sample}.h5ad"),
        species=study_path("results/qc/{sample}/species.tsv"),
        # not in Snakemake's report: this job's params hold the sheet row (free text, pasted raw
        # there); the study report shows the figure
        species_plot=study_path("results/qc/{sample}/species.png"),
    log:
        study_path("logs/ingest_sample/{sample}.log"),
    benchmark:
        study_path("benchmarks/ingest_sample/{sample}.tsv")
    conda:
        "../../envs/scanpy.yaml"
    resources:
        mem_mb=lambda wc, input, attempt: input_mb(input, 20) * attempt,
        runtime=60,
    params:
        row=sample_row,
        ingest=PARAMS.ingest,
    script:
        "../../scripts/ingest_sample.py"
