"""Adapter for rule enrich_de: CAMERA of every gene set on each donor-level cell type's pseudobulks; a ranking for the rest."""

from cordatlas.checks import check_table
from cordatlas.compare.de_summary import read_de_table
from cordatlas.compare.enrichment import ENRICHMENT_COLUMNS, enrich_by_cell_type, read_pseudobulks
from cordatlas.compare.plan import METHOD_PSEUDOBULK, planned_tables, read_plan
from cordatlas.genesets.library import gene_lists, load_library, prespecified_sets
from cordatlas.logs import rule_logging
from cordatlas.plotting.enrichment import plot_enrichment

with rule_logging(snakemake.log[0]) as log:
    de = read_de_table(snakemake.input.table)
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    gene_sets = gene_lists(library)
    plan = read_plan(snakemake.input.plan)
    pseudobulks = read_pseudobulks(
        planned_tables(
            plan[plan["method"] == METHOD_PSEUDOBULK],
            {METHOD_PSEUDOBULK: snakemake.input.pseudobulk},
        )
    )
    results = enrich_by_cell_type(
        de,
        gene_sets,
        snakemake.params.enrichment,
        snakemake.params.contrast,
        pseudobulks=pseudobulks,
        low_power_max_replicates=snakemake.params.comparison.low_power_max_replicates,
        numeric_covariates=snakemake.params.comparison.numeric_covariates,
        prespecified={c: prespecified_sets(library, c) for c in de["cell_type"].unique()},
    )
    log.info(
        "enrichment tests: %d over %d cell types (%d with donor pseudobulks)",
        len(results),
        de["cell_type"].nunique(),
        len(pseudobulks),
    )
    # no cell type with genes legitimately gives no test: the header is still needed
    check_table(
        results,
        snakemake.output.table,
        required_columns=ENRICHMENT_COLUMNS,
        fix="rerun enrich_de; report the log if it fails again",
    )
    results.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_enrichment(results, path=snakemake.output.figure, alpha=snakemake.params.alpha)
