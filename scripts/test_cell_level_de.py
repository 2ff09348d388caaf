"""Adapter for rule test_cell_level_de: the exploratory cell-level fallback for a cell type without donor replication."""

import anndata as ad

from cordatlas.checks import check_table
from cordatlas.compare.cell_level import cell_level_de
from cordatlas.compare.de_summary import DE_COLUMNS
from cordatlas.compare.plan import cell_type_of_slug, read_plan
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.logs import rule_logging
from cordatlas.plotting.de import plot_volcano
from cordatlas.vocabulary import evidence_title

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    plan = read_plan(snakemake.input.plan)
    cell_type = cell_type_of_slug(plan, snakemake.wildcards.cell_type)
    adata = ad.read_h5ad(snakemake.input.h5ad)
    results, notes = cell_level_de(adata, comparison, contrast, cell_type=cell_type)
    results = mark_confounded(results, read_aliased_factors(snakemake.input.design))
    for note in notes:
        log.warning("%s: %s", cell_type, note)
    # a cell type with too few cells legitimately has no gene: its header is still needed
    check_table(
        results,
        snakemake.output.table,
        required_columns=DE_COLUMNS,
        fix="rerun test_cell_level_de for this cell type; report the log if it fails again",
    )
    results.to_csv(snakemake.output.table, sep="\t", index=False)
    title = evidence_title(
        f"{cell_type}: {contrast.condition} vs {contrast.reference}", results["evidence"]
    )
    plot_volcano(results, path=snakemake.output.volcano, alpha=comparison.alpha, title=title)
