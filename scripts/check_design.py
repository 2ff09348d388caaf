"""Adapter for rule check_design: cross-tabulate condition against technical factors, flag aliasing."""

import pandas as pd

from cordatlas.config import read_samples, read_schema
from cordatlas.design import DESIGN_FACTORS, check_design
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]):
    summary = pd.read_csv(snakemake.input.qc_summary, sep="\t")
    dropped = set(summary.loc[summary["dropped_sample"].astype(bool), "sample"])
    contrast = snakemake.params.contrast
    samples = read_samples(
        snakemake.input.sheet,
        read_schema(snakemake.input.schema),
        contrast={"condition": contrast.condition, "reference": contrast.reference},
    )
    numeric = list(snakemake.params.comparison.numeric_covariates)
    samples = samples[["sample", "donor", "condition", *DESIGN_FACTORS, *numeric]]
    samples = samples.reset_index(drop=True)
    check = check_design(
        samples[~samples["sample"].isin(dropped)],
        contrast=contrast.as_tuple(),
        batch_key=snakemake.params.batch_key,
        numeric_covariates=numeric,
    )
    check.table.to_csv(snakemake.output.table, sep="\t", index=False)
    check.findings.to_csv(snakemake.output.findings, sep="\t", index=False)
