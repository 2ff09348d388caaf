"""Adapter for rule score_cycling: cycling fraction per donor and cell type, and its donor-level test."""

import pandas as pd

from cordatlas.compare.cycling import (
    FRACTION_COLUMNS,
    cell_cycle_phases,
    cycling_fractions,
    cycling_not_scored,
    cycling_tests,
)
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.design import mark_confounded, read_aliased_factors
from cordatlas.genesets.library import load_library
from cordatlas.io.stage import read_expression
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    comparison = snakemake.params.comparison
    contrast = snakemake.params.contrast
    library = load_library(snakemake.input.library, snakemake.input.extra_sets)
    adata = read_expression(snakemake.input.h5ad)  # X, obs, var: no counts, graph, embedding
    signatures = snakemake.params.signatures
    phases = cell_cycle_phases(
        adata,
        library,
        min_genes=signatures.min_genes,
        min_score=signatures.cycling_min_score,
        seed=snakemake.params.seed,
    )
    if phases is None:
        fractions = pd.DataFrame(columns=FRACTION_COLUMNS)
        types = sorted(
            set(adata.obs[comparison.cell_type_key].astype(str))
            - set(comparison.exclude_cell_types)
        )
        tests = cycling_not_scored(types, "too few S-phase or G2/M genes measured to call cycling")
    else:
        fractions = cycling_fractions(adata.obs, phases["cycling"], comparison)
        design = replicate_table(
            adata.obs, replicate_key=comparison.replicate_key, columns=comparison.covariates
        )
        tests = cycling_tests(fractions, design, comparison, contrast)
    tests = mark_confounded(tests, read_aliased_factors(snakemake.input.design))
    log.info("cycling tests:\n%s", tests.to_string())
    fractions.to_csv(snakemake.output.fractions, sep="\t", index=False)
    tests.to_csv(snakemake.output.tests, sep="\t", index=False)
