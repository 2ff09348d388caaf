"""Adapter for rule ingest_sample: one sample's raw counts into h5ad, with its species calls."""

from cordatlas.io.ingest import read_sample
from cordatlas.io.stage import write_stage
from cordatlas.logs import rule_logging
from cordatlas.plotting.qc import plot_species

with rule_logging(snakemake.log[0]) as log:
    row = snakemake.params.row
    result = read_sample(snakemake.input.counts, row, params=snakemake.params.ingest)
    adata = result.adata
    log.info("sample %s: %d cells x %d genes", row["sample"], adata.n_obs, adata.n_vars)
    write_stage(adata, snakemake.output.h5ad)
    result.species.to_csv(snakemake.output.species, sep="\t")
    plot_species(
        result.species,
        adata.uns["ingest"]["species"],
        sample=row["sample"],
        path=snakemake.output.species_plot,
    )
