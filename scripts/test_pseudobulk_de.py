"""Adapter for rule test_pseudobulk_de: PyDESeq2 on one cell type's donor pseudobulks, with its counts and figures."""

import anndata as ad

from cordatlas.checks import check_table
from cordatlas.compare.de_summary import DE_COLUMNS
from cordatlas.compare.deseq2 import leave_one_out_de, prespecified_genes, pseudobulk_de
from cordatlas.compare.plan import cell_type_of_slug, pseudobulk_mask, read_plan
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.genesets.library import load_library
from cordatlas.logs import rule_logging
from cordatlas.plotting.de import plot_de_heatmap, plot_volcano
from cordatlas.vocabulary import evidence_title

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    plan = read_plan(snakemake.input.plan)
    cell_type = cell_type_of_slug(plan, snakemake.wildcards.cell_type)
    pseudobulk = ad.read_h5ad(snakemake.input.h5ad)
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    results, notes = pseudobulk_de(
        pseudobulk,
        comparison,
        contrast,
        cell_type=cell_type,
        n_cpus=snakemake.threads,
        prespecified=prespecified_genes(library, cell_type),
    )
    results, loo_notes = leave_one_out_de(
        pseudobulk, results, comparison, contrast, cell_type=cell_type, n_cpus=snakemake.threads
    )
    notes += loo_notes
    results = mark_confounded(results, read_aliased_factors(snakemake.input.design))
    for note in notes:
        log.info("%s: %s", cell_type, note)
    fix = "rerun test_pseudobulk_de for this cell type; report the log if it fails again"
    # an untestable cell type legitimately has no gene: its header is still needed
    check_table(results, snakemake.output.table, required_columns=DE_COLUMNS, fix=fix)
    used = pseudobulk[
        pseudobulk_mask(
            pseudobulk.obs,
            cell_type=cell_type,
            conditions=contrast.as_tuple(),
            cell_type_key=comparison.cell_type_key,
            min_cells=comparison.min_cells_per_replicate,
        )
    ]
    counts = used.to_df().T.astype("int64").rename_axis("gene")
    # enrichment (CAMERA) reads the pseudobulks behind every table with genes
    tested = 0 if results.empty else 1
    check_table(counts, snakemake.output.counts, min_rows=tested, fix=fix)
    check_table(
        used.obs,
        snakemake.output.pseudobulks,
        required_columns=(comparison.replicate_key, "condition", *comparison.covariates),
        min_rows=tested,
        fix=fix,
    )
    results.to_csv(snakemake.output.table, sep="\t", index=False)
    counts.to_csv(snakemake.output.counts, sep="\t")
    used.obs.rename_axis("pseudobulk").to_csv(snakemake.output.pseudobulks, sep="\t")
    title = evidence_title(
        f"{cell_type}: {contrast.condition} vs {contrast.reference}", results["evidence"]
    )
    plot_volcano(results, path=snakemake.output.volcano, alpha=comparison.alpha, title=title)
    plot_de_heatmap(
        pseudobulk,
        results,
        cell_type=cell_type,
        path=snakemake.output.heatmap,
        n_top=comparison.heatmap_top_genes,
        alpha=comparison.alpha,
        contrast=contrast.as_tuple(),
        cell_type_key=comparison.cell_type_key,
        replicate_key=comparison.replicate_key,
        min_cells=comparison.min_cells_per_replicate,
    )
