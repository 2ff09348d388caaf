"""Adapter for rule test_signatures: donor-level test per signature and cell type, literature concordance, control beside."""

from pathlib import Path

import anndata as ad

from cordatlas.checks import check_table
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.compare.signature_tests import RESULT_COLUMNS, read_set_genes, signature_tests
from cordatlas.compare.signatures import read_replicate_scores
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.genesets.library import load_library
from cordatlas.io.stage import read_obs
from cordatlas.logs import rule_logging
from cordatlas.plotting.signatures import plot_signature_by_donor, plot_signature_heatmap

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    summary = read_replicate_scores(snakemake.input.replicates)
    obs = read_obs(snakemake.input.h5ad)
    design = replicate_table(
        obs, replicate_key=comparison.replicate_key, columns=comparison.covariates
    )
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    # the contamination check sums each set's scored genes in every cell type's pseudobulks
    pseudobulk = ad.read_h5ad(snakemake.input.pseudobulks)
    set_genes = read_set_genes(snakemake.input.genes)
    results = signature_tests(
        summary,
        design,
        library,
        comparison,
        contrast,
        control_flag_pvalue=snakemake.params.signatures.control_flag_pvalue,
        control_flag_difference=snakemake.params.signatures.control_flag_difference,
        pseudobulk=pseudobulk,
        set_genes=set_genes,
    )
    results = mark_confounded(results, read_aliased_factors(snakemake.input.design))
    for row in results.query("concordance in ['agree', 'disagree']").itertuples():
        log.info("%s in %s: %s (%s)", row.signature, row.cell_type, row.concordance, row.note)
    flagged = results[results["contamination_flag"].fillna(False).astype(bool)]
    log.info("%d signature rows carry contamination_flag", len(flagged))
    # no donor means (score_signatures) legitimately leave no test: the header is still needed
    check_table(
        results,
        snakemake.output.tests,
        required_columns=RESULT_COLUMNS,
        fix=f"check {snakemake.input.replicates}; see this job's log",
    )
    results.to_csv(snakemake.output.tests, sep="\t", index=False)
    plot_signature_heatmap(
        results,
        path=snakemake.output.heatmap,
        contrast=contrast.as_tuple(),
        alpha=comparison.alpha,
    )
    folder = Path(snakemake.output.donors)
    folder.mkdir(parents=True, exist_ok=True)
    for signature in sorted(set(summary["signature"])):
        plot_signature_by_donor(
            summary,
            signature=signature,
            path=folder / f"{signature}.png",
            results=results,
            contrast=contrast.as_tuple(),
        )
