"""Adapter for rule ingest_sample: read one sample's raw counts from any supported format into h5ad."""

from cordatlas.io.ingest import ingest_sample
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    row = snakemake.params.row
    adata = ingest_sample(snakemake.input.counts, row, params=snakemake.params.ingest)
    log.info("sample %s: %d cells x %d genes", row["sample"], adata.n_obs, adata.n_vars)
    adata.write_h5ad(snakemake.output.h5ad, compression="gzip")
