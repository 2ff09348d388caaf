"""Adapter for rule test_pseudobulk_de: PyDESeq2 on one cell type's donor pseudobulks, with its counts and figures."""

import anndata as ad

from cordatlas.compare.pseudobulk import (
    cell_type_of_slug,
    pseudobulk_mask,
    read_plan,
    test_pseudobulk_de,
)
from cordatlas.logs import rule_logging
from cordatlas.plotting.de import plot_de_heatmap, plot_volcano

with rule_logging(snakemake.log[0]) as log:
    cfg = snakemake.params.comparison
    plan = read_plan(snakemake.input.plan)
    cell_type = cell_type_of_slug(plan, snakemake.wildcards.cell_type)
    pseudobulk = ad.read_h5ad(snakemake.input.h5ad)
    results, notes = test_pseudobulk_de(
        pseudobulk,
        cell_type=cell_type,
        contrast=snakemake.params.contrast,
        cell_type_key=cfg["cell_type_key"],
        replicate_key=cfg["replicate_key"],
        covariates=cfg["covariates"],
        min_cells=cfg["min_cells_per_replicate"],
        min_gene_counts=cfg["min_gene_counts"],
        min_replicates=cfg["min_replicates_per_group"],
        n_cpus=snakemake.threads,
    )
    for note in notes:
        log.info("%s: %s", cell_type, note)
    results.to_csv(snakemake.output.table, sep="\t", index=False)
    used = pseudobulk[
        pseudobulk_mask(
            pseudobulk.obs,
            cell_type=cell_type,
            conditions=snakemake.params.contrast,
            cell_type_key=cfg["cell_type_key"],
            min_cells=cfg["min_cells_per_replicate"],
        )
    ]
    counts = used.to_df().T.astype("int64").rename_axis("gene")
    counts.to_csv(snakemake.output.counts, sep="\t")
    used.obs.rename_axis("pseudobulk").to_csv(snakemake.output.pseudobulks, sep="\t")
    title = f"{cell_type}: {snakemake.params.contrast[0]} vs {snakemake.params.contrast[1]}"
    plot_volcano(results, path=snakemake.output.volcano, alpha=cfg["alpha"], title=title)
    plot_de_heatmap(
        pseudobulk,
        results,
        cell_type=cell_type,
        path=snakemake.output.heatmap,
        n_top=cfg["heatmap_top_genes"],
        alpha=cfg["alpha"],
        contrast=snakemake.params.contrast,
        cell_type_key=cfg["cell_type_key"],
        replicate_key=cfg["replicate_key"],
        min_cells=cfg["min_cells_per_replicate"],
    )
