"""Adapter for rule score_signatures: every cell scored for every gene set (and potency), means per donor and cell type."""

from cordatlas.checks import check_table
from cordatlas.compare.signatures import SUMMARY_COLUMNS, score_signatures, summarise_by_replicate
from cordatlas.genesets.library import load_library
from cordatlas.io.stage import read_expression
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    # X, obs, var: the counts layer is not read; potency counts the genes detected in X
    # (log-normalisation keeps zeros at zero, so the count is the same)
    adata = read_expression(snakemake.input.h5ad)
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    log.info("gene-signature library version %s", library["version"])
    scores, genes = score_signatures(
        adata,
        library,
        seed=snakemake.params.seed,
        min_genes=snakemake.params.signatures.min_genes,
        counts_layer=None,
    )
    for row in genes.itertuples():
        if not row.scored:
            log.warning("signature %s not scored: %s", row.signature, row.reason)
    summary = summarise_by_replicate(scores, adata.obs, comparison)
    fix = f"check {snakemake.input.h5ad} and the gene-signature library; see this job's log"
    check_table(
        scores, snakemake.output.cells, min_rows=adata.n_obs, what=" (one per cell)", fix=fix
    )
    check_table(
        genes,
        snakemake.output.genes,
        required_columns=("signature", "category", "role", "n_genes", "n_found", "scored"),
        min_rows=1,
        fix=fix,
    )
    # no (donor x cell type) with enough cells legitimately leaves no mean: the header stays
    check_table(summary, snakemake.output.replicates, required_columns=SUMMARY_COLUMNS, fix=fix)
    scores.rename_axis("cell").to_csv(snakemake.output.cells, sep="\t", float_format="%.4g")
    genes.to_csv(snakemake.output.genes, sep="\t", index=False)
    summary.to_csv(snakemake.output.replicates, sep="\t", index=False)
