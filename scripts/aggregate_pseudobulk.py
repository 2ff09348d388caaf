"""Adapter for rule aggregate_pseudobulk: summed raw counts per (cell type x donor) and the per-cell-type test plan."""

from cordatlas.atlas.genes import UNMEASURED_KEY
from cordatlas.checks import check_cells_genes, check_table
from cordatlas.compare.plan import METHOD_CELL_LEVEL, PLAN_COLUMNS, plan_comparisons
from cordatlas.compare.pseudobulk import aggregate_pseudobulk
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.io.stage import open_layer
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    # the raw counts alone, summed a chunk of cells at a time from the file (no log-normalised
    # X, embeddings or graphs)
    with open_layer(snakemake.input.h5ad, "counts", uns_keys=(UNMEASURED_KEY,)) as adata:
        pseudobulk = aggregate_pseudobulk(adata, comparison, counts_layer=None)
    plan = plan_comparisons(pseudobulk.obs, comparison, snakemake.params.contrast)
    plan = mark_confounded(plan, read_aliased_factors(snakemake.input.design))
    for row in plan.itertuples():
        level = log.warning if row.method == METHOD_CELL_LEVEL else log.info
        level("%s: %s, %s (%s)", row.cell_type, row.method, row.evidence, row.note)
    # every later DE job reads these: at least one pseudobulk of integer counts, one gene
    check_cells_genes(
        pseudobulk,
        snakemake.output.h5ad,
        require_obs=(comparison.cell_type_key, comparison.replicate_key, "condition", "n_cells"),
        counts="X",
        obs_unit="pseudobulks",
        fix=f"check {snakemake.input.h5ad} has annotated cells and genes measured in every sample",
    )
    check_table(
        plan,
        snakemake.output.plan,
        required_columns=PLAN_COLUMNS,
        min_rows=1,
        fix=f"check the cell-type labels ({comparison.cell_type_key}) of {snakemake.input.h5ad}",
    )
    pseudobulk.write_h5ad(snakemake.output.h5ad)
    plan.to_csv(snakemake.output.plan, sep="\t", index=False)
