"""Adapter for rule score_development: each donor's place on a fetal-to-adult axis, per cell type."""

import anndata as ad
import pandas as pd

from cordatlas.compare.development import (
    development_axis,
    ontogeny_genes,
    project_development_axis,
    read_development_reference,
    replicate_gene_means,
)
from cordatlas.compare.signatures import load_library, read_replicate_scores
from cordatlas.logs import rule_logging
from cordatlas.plotting.signatures import plot_development_axis

with rule_logging(snakemake.log[0]) as log:
    cfg = snakemake.params.comparison
    contrast = snakemake.params.contrast
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    if snakemake.input.reference:
        reference = read_development_reference(snakemake.input.reference)
        adata = ad.read_h5ad(snakemake.input.h5ad)
        expression = replicate_gene_means(
            adata,
            ontogeny_genes(library),
            cell_type_key=cfg["cell_type_key"],
            replicate_key=cfg["replicate_key"],
            min_cells=cfg["min_cells_per_replicate"],
            exclude=cfg["exclude_cell_types"],
        )
        axis = project_development_axis(expression, reference, library=library)
    else:
        summary = read_replicate_scores(snakemake.input.replicates)
        genes = pd.read_csv(snakemake.input.genes, sep="\t")
        axis = development_axis(
            summary, library, reference_condition=contrast[1], scoring_report=genes
        )
    log.info("development axis rows: %d (method %s)", len(axis), sorted(set(axis["method"])))
    axis.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_development_axis(axis, path=snakemake.output.figure, contrast=contrast)
