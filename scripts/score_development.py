"""Adapter for rule score_development: each donor's place on a reference's fetal-to-adult axis, per cell type."""

import anndata as ad

from cordatlas.checks import check_table
from cordatlas.compare.development import (
    AXIS_COLUMNS,
    axis_without_reference,
    development_contrast,
    ontogeny_cell_types,
    project_development_axis,
    read_development_reference,
)
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.genesets.library import load_library
from cordatlas.io.stage import read_obs
from cordatlas.logs import rule_logging
from cordatlas.plotting.signatures import plot_development_axis

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    signatures = snakemake.params.signatures
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    if snakemake.input.reference:
        reference = read_development_reference(snakemake.input.reference)
        adata = ad.read_h5ad(snakemake.input.h5ad)
        axis = project_development_axis(adata, reference, library, comparison)
    else:
        log.warning("no signatures.development_reference: the development axis is not estimable")
        obs = read_obs(snakemake.input.h5ad)
        axis = axis_without_reference(ontogeny_cell_types(obs, library, comparison), library)
    tests = development_contrast(axis, contrast, min_donors=signatures.development_min_donors)
    tests = mark_confounded(tests, read_aliased_factors(snakemake.input.design))
    log.info("development contrast:\n%s", tests.to_string())
    fix = f"check {snakemake.input.h5ad} holds annotated cells; report the log if it fails again"
    check_table(axis, snakemake.output.table, required_columns=AXIS_COLUMNS, fix=fix)
    check_table(
        tests, snakemake.output.contrast, required_columns=("cell_type", "evidence"), fix=fix
    )
    axis.to_csv(snakemake.output.table, sep="\t", index=False)
    tests.to_csv(snakemake.output.contrast, sep="\t", index=False)
    plot_development_axis(axis, path=snakemake.output.figure, contrast=contrast.as_tuple())
