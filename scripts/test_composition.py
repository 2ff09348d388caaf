"""Adapter for rule test_composition: per-donor cell-type proportions and a donor-level test per cell type."""

from cordatlas.checks import check_table
from cordatlas.compare.composition import (
    COMPOSITION_COLUMNS,
    composition_tests,
    replicate_proportions,
)
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.io.stage import read_obs
from cordatlas.logs import rule_logging
from cordatlas.plotting.composition import plot_composition

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    obs = read_obs(snakemake.input.h5ad)
    proportions = replicate_proportions(obs, comparison)
    design = replicate_table(
        obs, replicate_key=comparison.replicate_key, columns=comparison.covariates
    )
    # the gene-set library states no expected shift in composition: every cell type is in the
    # exploratory family (composition_tests' prespecified is empty)
    tests = composition_tests(proportions, design, comparison, contrast)
    tests = mark_confounded(tests, read_aliased_factors(snakemake.input.design))
    log.info("composition tests:\n%s", tests.to_string())
    fix = f"check the cell-type labels ({comparison.cell_type_key}) of {snakemake.input.h5ad}"
    # every label excluded (comparison.exclude_cell_types) leaves nothing to test: empty is legal
    check_table(
        proportions,
        snakemake.output.proportions,
        required_columns=(
            comparison.replicate_key,
            "condition",
            "cell_type",
            "n_cells",
            "n_total",
            "proportion",
        ),
        fix=fix,
    )
    check_table(tests, snakemake.output.tests, required_columns=COMPOSITION_COLUMNS, fix=fix)
    proportions.to_csv(snakemake.output.proportions, sep="\t", index=False)
    tests.to_csv(snakemake.output.tests, sep="\t", index=False)
    plot_composition(
        proportions,
        tests,
        path=snakemake.output.figure,
        contrast=contrast.as_tuple(),
        alpha=comparison.alpha,
    )
