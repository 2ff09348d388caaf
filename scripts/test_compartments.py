"""Adapter for rule test_compartments: subtype shares within each lineage and signature scores standardised to one compartment mix."""

import pandas as pd

from cordatlas.annotate.panel import load_panel, merge_panels
from cordatlas.checks import check_table
from cordatlas.compare.compartments import (
    ADJUSTED_COLUMNS,
    SUBSET_COLUMNS,
    compartment_adjusted,
    lineage_of_labels,
    subset_composition,
)
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.io.stage import read_obs
from cordatlas.logs import rule_logging
from cordatlas.plotting.compartments import plot_compartments

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    # the lineages are those of the panel the atlas was annotated with (annotation.panel and
    # extra_panel, the inputs of annotate_cells)
    panel = load_panel(snakemake.input.panel)
    if snakemake.input.extra_panel:
        panel = merge_panels(panel, load_panel(snakemake.input.extra_panel))
    labels = lineage_of_labels(panel)
    obs = read_obs(snakemake.input.h5ad)
    obs.index = obs.index.astype(str)
    design = replicate_table(
        obs,
        replicate_key=comparison.replicate_key,
        columns=comparison.covariates,
        numeric=comparison.numeric_covariates,
    )
    scores = pd.read_csv(snakemake.input.scores, sep="\t", index_col="cell")
    scores.index = scores.index.astype(str)
    subsets = subset_composition(obs, design, comparison, contrast, labels=labels)
    adjusted = compartment_adjusted(scores, obs, design, comparison, contrast, labels=labels)
    aliased = read_aliased_factors(snakemake.input.design)
    subsets = mark_confounded(subsets, aliased)
    adjusted = mark_confounded(adjusted, aliased)
    log.info("subset composition:\n%s", subsets.to_string())
    log.info("compartment-adjusted verdicts: %s", adjusted["verdict"].value_counts().to_dict())
    fix = (
        f"check the cell-type labels ({comparison.cell_type_key}) of {snakemake.input.h5ad} "
        f"and the panel's lineages ({snakemake.input.panel})"
    )
    # a panel without lineage subtypes among these cells leaves nothing to test: empty is legal
    check_table(subsets, snakemake.output.subsets, required_columns=SUBSET_COLUMNS, fix=fix)
    check_table(adjusted, snakemake.output.adjusted, required_columns=ADJUSTED_COLUMNS, fix=fix)
    subsets.to_csv(snakemake.output.subsets, sep="\t", index=False)
    adjusted.to_csv(snakemake.output.adjusted, sep="\t", index=False)
    plot_compartments(
        subsets,
        adjusted,
        path=snakemake.output.figure,
        contrast=contrast.as_tuple(),
        alpha=comparison.alpha,
    )
