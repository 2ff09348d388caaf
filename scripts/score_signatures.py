"""Adapter for rule score_signatures: every cell scored for every gene set (and potency), means per donor and cell type."""

import anndata as ad

from cordatlas.compare.signatures import score_signatures, summarise_by_replicate
from cordatlas.genesets.library import load_library
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    adata = ad.read_h5ad(snakemake.input.h5ad)
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    log.info("gene-signature library version %s", library["version"])
    scores, genes = score_signatures(
        adata,
        library,
        seed=snakemake.params.seed,
        min_genes=snakemake.params.signatures.min_genes,
    )
    for row in genes.itertuples():
        if not row.scored:
            log.warning("signature %s not scored: %s", row.signature, row.reason)
    summary = summarise_by_replicate(scores, adata.obs, comparison)
    scores.rename_axis("cell").to_csv(snakemake.output.cells, sep="\t", float_format="%.4g")
    genes.to_csv(snakemake.output.genes, sep="\t", index=False)
    summary.to_csv(snakemake.output.replicates, sep="\t", index=False)
