"""Adapter for rule test_cell_level_de: the exploratory cell-level fallback for a cell type without donor replication."""

import anndata as ad

from cordatlas.compare.pseudobulk import cell_type_of_slug, read_plan, test_cell_level_de
from cordatlas.logs import rule_logging
from cordatlas.plotting.de import plot_volcano

with rule_logging(snakemake.log[0]) as log:
    cfg = snakemake.params.comparison
    plan = read_plan(snakemake.input.plan)
    cell_type = cell_type_of_slug(plan, snakemake.wildcards.cell_type)
    adata = ad.read_h5ad(snakemake.input.h5ad)
    results, notes = test_cell_level_de(
        adata,
        cell_type=cell_type,
        contrast=snakemake.params.contrast,
        cell_type_key=cfg["cell_type_key"],
        replicate_key=cfg["replicate_key"],
        min_cells=cfg["min_cells_per_replicate"],
    )
    for note in notes:
        log.warning("%s: %s", cell_type, note)
    results.to_csv(snakemake.output.table, sep="\t", index=False)
    title = f"{cell_type}: {snakemake.params.contrast[0]} vs {snakemake.params.contrast[1]}"
    plot_volcano(results, path=snakemake.output.volcano, alpha=cfg["alpha"], title=title)
