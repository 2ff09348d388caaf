"""Adapter for rule enrich_de: CAMERA of every gene set on each donor-level cell type's pseudobulks; a ranking for the rest."""

from cordatlas.compare.de_summary import read_de_table
from cordatlas.compare.enrichment import enrich_by_cell_type, read_pseudobulks
from cordatlas.genesets.library import gene_lists, load_library
from cordatlas.logs import rule_logging
from cordatlas.plotting.enrichment import plot_enrichment

with rule_logging(snakemake.log[0]) as log:
    de = read_de_table(snakemake.input.table)
    gene_sets = gene_lists(load_library(snakemake.input.library, snakemake.input.extra_sets))
    pseudobulks = read_pseudobulks(snakemake.input.tables)
    results = enrich_by_cell_type(
        de,
        gene_sets,
        snakemake.params.enrichment,
        snakemake.params.contrast,
        pseudobulks=pseudobulks,
        low_power_max_replicates=snakemake.params.comparison.low_power_max_replicates,
    )
    log.info(
        "enrichment tests: %d over %d cell types (%d with donor pseudobulks)",
        len(results),
        de["cell_type"].nunique(),
        len(pseudobulks),
    )
    results.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_enrichment(results, path=snakemake.output.figure, alpha=snakemake.params.alpha)
