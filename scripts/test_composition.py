"""Adapter for rule test_composition: per-donor cell-type proportions and a donor-level test per cell type."""

import anndata as ad

from cordatlas.compare.composition import replicate_proportions, test_composition
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.logs import rule_logging
from cordatlas.plotting.compare import plot_composition

with rule_logging(snakemake.log[0]) as log:
    cfg = snakemake.params.comparison
    obs = ad.read_h5ad(snakemake.input.h5ad, backed="r").obs
    proportions = replicate_proportions(
        obs,
        cell_type_key=cfg["cell_type_key"],
        replicate_key=cfg["replicate_key"],
        exclude=cfg["exclude_cell_types"],
    )
    design = replicate_table(obs, replicate_key=cfg["replicate_key"], columns=cfg["covariates"])
    tests = test_composition(
        proportions,
        design,
        contrast=snakemake.params.contrast,
        covariates=cfg["covariates"],
        transform=cfg["composition_transform"],
        min_replicates=cfg["min_replicates_per_group"],
        replicate_key=cfg["replicate_key"],
    )
    log.info("composition tests:\n%s", tests.to_string())
    proportions.to_csv(snakemake.output.proportions, sep="\t", index=False)
    tests.to_csv(snakemake.output.tests, sep="\t", index=False)
    plot_composition(
        proportions,
        tests,
        path=snakemake.output.figure,
        contrast=snakemake.params.contrast,
        alpha=cfg["alpha"],
    )
