"""Adapter for rule enrich_de: rank-based enrichment of every gene set in each cell type's DE statistics."""

from cordatlas.compare.enrichment import rank_enrichment_by_cell_type
from cordatlas.compare.pseudobulk import read_de_table
from cordatlas.compare.signatures import gene_lists, load_library
from cordatlas.logs import rule_logging
from cordatlas.plotting.compare import plot_enrichment

with rule_logging(snakemake.log[0]) as log:
    cfg = snakemake.params.enrichment
    de = read_de_table(snakemake.input.table)
    gene_sets = gene_lists(load_library(snakemake.input.library, snakemake.input.extra_sets))
    results = rank_enrichment_by_cell_type(
        de, gene_sets, min_size=cfg["min_set_size"], max_size=cfg["max_set_size"]
    )
    log.info("enrichment tests: %d over %d cell types", len(results), de["cell_type"].nunique())
    results.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_enrichment(results, path=snakemake.output.figure, alpha=snakemake.params.alpha)
