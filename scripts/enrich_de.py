"""Adapter for rule enrich_de: rank-based enrichment of every gene set in each cell type's DE statistics."""

from cordatlas.compare.de_summary import read_de_table
from cordatlas.compare.enrichment import rank_enrichment_by_cell_type
from cordatlas.genesets.library import gene_lists, load_library
from cordatlas.logs import rule_logging
from cordatlas.plotting.enrichment import plot_enrichment

with rule_logging(snakemake.log[0]) as log:
    de = read_de_table(snakemake.input.table)
    gene_sets = gene_lists(load_library(snakemake.input.library, snakemake.input.extra_sets))
    results = rank_enrichment_by_cell_type(de, gene_sets, snakemake.params.enrichment)
    log.info("enrichment tests: %d over %d cell types", len(results), de["cell_type"].nunique())
    results.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_enrichment(results, path=snakemake.output.figure, alpha=snakemake.params.alpha)
