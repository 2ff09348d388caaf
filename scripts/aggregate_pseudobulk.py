"""Adapter for checkpoint aggregate_pseudobulk: summed raw counts per (cell type x donor) and the per-cell-type test plan."""

import anndata as ad

from cordatlas.compare.pseudobulk import aggregate_pseudobulk, plan_comparisons
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    cfg = snakemake.params.comparison
    adata = ad.read_h5ad(snakemake.input.h5ad)
    pseudobulk = aggregate_pseudobulk(
        adata,
        cell_type_key=cfg["cell_type_key"],
        replicate_key=cfg["replicate_key"],
        metadata=cfg["covariates"],
    )
    plan = plan_comparisons(
        pseudobulk.obs,
        contrast=snakemake.params.contrast,
        cell_type_key=cfg["cell_type_key"],
        replicate_key=cfg["replicate_key"],
        min_cells=cfg["min_cells_per_replicate"],
        min_replicates=cfg["min_replicates_per_group"],
        exclude=cfg["exclude_cell_types"],
    )
    for row in plan.itertuples():
        level = log.warning if row.method == "cell_level_wilcoxon" else log.info
        level("%s: %s (%s)", row.cell_type, row.method, row.reason)
    pseudobulk.write_h5ad(snakemake.output.h5ad)
    plan.to_csv(snakemake.output.plan, sep="\t", index=False)
