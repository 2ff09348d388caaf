"""Adapter for rule test_composition: per-donor cell-type proportions and a donor-level test per cell type."""

import anndata as ad

from cordatlas.compare.composition import composition_tests, replicate_proportions
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.logs import rule_logging
from cordatlas.plotting.composition import plot_composition

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    obs = ad.read_h5ad(snakemake.input.h5ad, backed="r").obs
    proportions = replicate_proportions(obs, comparison)
    design = replicate_table(
        obs, replicate_key=comparison.replicate_key, columns=comparison.covariates
    )
    tests = composition_tests(proportions, design, comparison, contrast)
    tests = mark_confounded(tests, read_aliased_factors(snakemake.input.design))
    log.info("composition tests:\n%s", tests.to_string())
    proportions.to_csv(snakemake.output.proportions, sep="\t", index=False)
    tests.to_csv(snakemake.output.tests, sep="\t", index=False)
    plot_composition(
        proportions,
        tests,
        path=snakemake.output.figure,
        contrast=contrast.as_tuple(),
        alpha=comparison.alpha,
    )
