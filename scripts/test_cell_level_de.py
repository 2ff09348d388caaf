"""Adapter for rule test_cell_level_de: the exploratory cell-level fallback for a cell type without donor replication."""

import anndata as ad
import pandas as pd

from cordatlas.logs import rule_logging
from cordatlas.plots_de import plot_volcano
from cordatlas.pseudobulk import test_cell_level_de

with rule_logging(snakemake.log[0]) as log:
    cfg = snakemake.params.comparison
    plan = pd.read_csv(
        snakemake.input.plan, sep="\t", dtype={"cell_type": str, "slug": str}, keep_default_na=False
    )
    cell_type = plan.set_index("slug").loc[snakemake.wildcards.cell_type, "cell_type"]
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
