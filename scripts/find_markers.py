"""Adapter for rule find_markers: Wilcoxon markers of the working clusters, as a table and a dot plot."""

from cordatlas.atlas.markers import find_markers
from cordatlas.checks import check_table
from cordatlas.io.stage import read_expression
from cordatlas.logs import rule_logging
from cordatlas.plotting.atlas import plot_marker_dotplot

with rule_logging(snakemake.log[0]):
    markers_params = snakemake.params.markers
    adata = read_expression(snakemake.input.h5ad)  # X, obs, var: no counts, graph, embedding
    markers = find_markers(
        adata, groupby="leiden", n_genes=markers_params.n_genes, threads=snakemake.threads
    )
    check_table(
        markers,
        snakemake.output.table,
        required_columns=("cluster", "rank", "gene", "score", "log2FC", "pval", "padj"),
        min_rows=1,
        what=" (marker genes of the working clusters)",
        fix=f"check {snakemake.input.h5ad} holds clusters (obs leiden) and genes measured in "
        "every sample",
    )
    markers.to_csv(snakemake.output.table, sep="\t", index=False)
    plot_marker_dotplot(
        adata,
        markers,
        groupby="leiden",
        n_per_cluster=markers_params.n_dotplot,
        path=snakemake.output.dotplot,
    )
