"""Adapter for rule qc_sample: metrics, thresholds, doublets and per-cell reasons for one sample."""

import anndata as ad
import pandas as pd

from cordatlas.logs import rule_logging
from cordatlas.qc.sample import run_sample_qc

with rule_logging(snakemake.log[0]) as log:
    qc = snakemake.params.qc
    sample = snakemake.wildcards.sample
    result = run_sample_qc(
        ad.read_h5ad(snakemake.input.h5ad),
        sample=sample,
        mito_prefix=qc["mito_prefix"],
        ribo_prefixes=qc["ribo_prefixes"],
        hb_pattern=qc["hb_pattern"],
        nmads=qc["nmads"],
        max_pct_counts_mt=qc["max_pct_counts_mt"],
        min_counts=qc["min_counts"],
        min_genes=qc["min_genes"],
        max_pct_counts_hb=qc["max_pct_counts_hb"],
        top20_exempt_min_pct_hb=qc["top20_exempt_min_pct_hb"],
        remove_doublets=qc["doublets"]["remove"],
        doublet_method=qc["doublets"]["method"],
        expected_doublet_rate=qc["doublets"]["expected_doublet_rate"],
        doublet_threshold=qc["doublets"]["threshold"],
        doublet_threshold_method=qc["doublets"]["threshold_method"],
        min_cells_per_sample=qc["min_cells_per_sample"],
        on_small_sample=qc["on_small_sample"],
        fixed=snakemake.params.fixed,
        seed=snakemake.params.seed,
    )
    log.info("sample %s: %s", sample, result.summary)
    result.adata.write_h5ad(snakemake.output.h5ad, compression="gzip")
    result.cells.to_csv(snakemake.output.cells, sep="\t")
    result.thresholds.to_csv(snakemake.output.thresholds, sep="\t", index=False)
    pd.DataFrame([result.summary]).to_csv(snakemake.output.summary, sep="\t", index=False)
