"""Adapter for rule annotate_cells: marker-panel labels per cluster (and CellTypist if given)."""

import anndata as ad

from cordatlas.annotate.celltypist import celltypist_annotate
from cordatlas.annotate.labels import annotate_clusters, marker_evidence, score_cell_types
from cordatlas.annotate.panel import load_panel, merge_panels
from cordatlas.atlas.build import attach_part
from cordatlas.checks import check_cells_genes
from cordatlas.io.stage import copy_with_annotations, read_expression
from cordatlas.logs import rule_logging
from cordatlas.plotting.atlas import plot_panel_dotplot

with rule_logging(snakemake.log[0]) as log:
    annotation = snakemake.params.annotation
    # the normalised expression (not the counts) with the embedding stages' part (PCA, Harmony,
    # kNN, Leiden); the UMAP is embed_umap's, laid out meanwhile
    adata = read_expression(snakemake.input.h5ad, uns_keys=("unmeasured_genes",))
    attach_part(adata, ad.read_h5ad(snakemake.input.clusters))
    # the panel files come as inputs (annotation.panel / extra_panel, resolved by the rule)
    panel = load_panel(snakemake.input.panel)
    if snakemake.input.extra_panel:
        panel = merge_panels(panel, load_panel(snakemake.input.extra_panel))
    scores, genes = score_cell_types(adata, panel, seed=snakemake.params.seed)
    clusters = annotate_clusters(
        adata,
        scores,
        cluster_key="leiden",
        min_score=annotation.min_score,
        min_margin=annotation.min_margin,
        lineages={n: e.get("lineage") for n, e in panel["cell_types"].items()},
    )
    evidence = marker_evidence(
        adata,
        clusters,
        panel,
        cluster_key="leiden",
        min_detected_fraction=annotation.min_detected_fraction,
    )
    adata.uns["annotation"] = {"panel_version": str(panel["version"])}
    if snakemake.input.celltypist_model:
        celltypist_annotate(adata, snakemake.input.celltypist_model, cluster_key="leiden")
    log.info("cell types: %s", adata.obs["cell_type"].value_counts().to_dict())
    clusters.to_csv(snakemake.output.clusters, sep="\t", index=False)
    genes.to_csv(snakemake.output.panel_genes, sep="\t", index=False)
    evidence.to_csv(snakemake.output.marker_evidence, sep="\t", index=False)
    plot_panel_dotplot(
        adata,
        {name: entry["markers"] for name, entry in panel["cell_types"].items()},
        groupby="cell_type",
        path=snakemake.output.dotplot,
    )
    check_cells_genes(
        adata,
        snakemake.output.h5ad,
        require_obs=("cell_type", "leiden", "sample", "donor", "condition"),
        what=" (the annotated cells)",
        fix=f"check {snakemake.input.h5ad}, {snakemake.input.clusters} and this job's log",
    )
    # the normalised file copied as it is (X and the counts layer), these annotations over it
    copy_with_annotations(snakemake.input.h5ad, snakemake.output.h5ad, adata)
