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
from cordatlas.compare.signatures import read_replicate_scores
from cordatlas.genesets.library import load_library
from cordatlas.logs import rule_logging
from cordatlas.plotting.signatures import plot_development_axis

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    if snakemake.input.reference:
        reference = read_development_reference(snakemake.input.reference)
        adata = ad.read_h5ad(snakemake.input.h5ad)
        expression = replicate_gene_means(adata, ontogeny_genes(library), comparison)
        axis = project_development_axis(expression, reference, library=library)
    else:
        summary = read_replicate_scores(snakemake.input.replicates)
        genes = pd.read_csv(snakemake.input.genes, sep="\t")
        axis = development_axis(
            summary, library, reference_condition=contrast.reference, scoring_report=genes
        )
    log.info("development axis rows: %d (method %s)", len(axis), sorted(set(axis["method"])))
    axis.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_development_axis(axis, path=snakemake.output.figure, contrast=contrast.as_tuple())
