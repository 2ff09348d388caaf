"""Adapter for rule simulate_demo: write the synthetic demo samples and their truth tables."""

from cordatlas.config import read_samples, read_schema
from cordatlas.demo.write import demo_rows, write_demo
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    params = snakemake.params
    contrast = params.contrast
    # the sheet is re-read here: a table passed as a param would be pasted raw into
    # Snakemake's report
    samples = read_samples(
        snakemake.input.sheet,
        read_schema(snakemake.input.schema),
        contrast={"condition": contrast.condition, "reference": contrast.reference},
    )
    demo = demo_rows(samples, params.demo.outdir)
    study = write_demo(
        demo,
        params.demo,
        contrast,
        truth_dir=params.truth_dir,
        threads=snakemake.threads,
    )
    log.info(
        "SYNTHETIC demo (%s) written: %d cells x %d genes in %d samples",
        params.demo.realism,
        study.adata.n_obs,
        study.adata.n_vars,
        demo["sample"].nunique(),
    )
