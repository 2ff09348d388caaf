"""Adapter for rule merge_samples: concatenate the QC'd samples, raw counts in X (one copy)."""

import anndata as ad
import pandas as pd

from cordatlas.atlas.build import merge_samples
from cordatlas.io.stage import write_stage
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]):
    merged, record = merge_samples(
        [ad.read_h5ad(p) for p in snakemake.input.h5ads],
        gene_join=snakemake.params.gene_join,
        min_cells_per_gene=snakemake.params.min_cells_per_gene,
        min_shared_genes=snakemake.params.min_shared_genes,
    )
    write_stage(merged, snakemake.output.h5ad)
    rows = [(k, v if not isinstance(v, list | dict) else repr(v)) for k, v in record.items()]
    pd.DataFrame(rows, columns=["quantity", "value"]).to_csv(
        snakemake.output.summary, sep="\t", index=False
    )
