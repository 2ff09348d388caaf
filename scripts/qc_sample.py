"""Adapter for rule qc_sample: metrics, thresholds, doublets and per-cell reasons for one sample."""

import anndata as ad
import pandas as pd

from cordatlas.logs import rule_logging
from cordatlas.qc.sample import run_sample_qc

with rule_logging(snakemake.log[0]) as log:
    sample = snakemake.wildcards.sample
    result = run_sample_qc(
        ad.read_h5ad(snakemake.input.h5ad),
        sample=sample,
        params=snakemake.params.qc,
        fixed=snakemake.params.fixed,
        seed=snakemake.params.seed,
        on_small_sample=snakemake.params.on_small_sample,
    )
    log.info("sample %s: %s", sample, result.summary)
    result.adata.write_h5ad(snakemake.output.h5ad, compression="gzip")
    result.cells.to_csv(snakemake.output.cells, sep="\t")
    result.thresholds.to_csv(snakemake.output.thresholds, sep="\t", index=False)
    pd.DataFrame([result.summary]).to_csv(snakemake.output.summary, sep="\t", index=False)
