"""Adapter for rule simulate_demo: write the synthetic demo samples and their truth tables."""

from cordatlas.demo.write import write_demo
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    params = snakemake.params
    study = write_demo(
        params.samples,
        params.demo,
        params.contrast,
        truth_dir=params.truth_dir,
        threads=snakemake.threads,
    )
    log.info(
        "SYNTHETIC demo written: %d cells x %d genes in %d samples",
        study.adata.n_obs,
        study.adata.n_vars,
        params.samples["sample"].nunique(),
    )
