"""Adapter for rule check_design: cross-tabulate condition against technical factors, flag aliasing."""

import pandas as pd

from cordatlas.design import check_design
from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]):
    summary = pd.read_csv(snakemake.input.qc_summary, sep="\t")
    dropped = set(summary.loc[summary["dropped_sample"].astype(bool), "sample"])
    samples = snakemake.params.samples
    check = check_design(
        samples[~samples["sample"].isin(dropped)],
        contrast=snakemake.params.contrast.as_tuple(),
        batch_key=snakemake.params.batch_key,
    )
    check.table.to_csv(snakemake.output.table, sep="\t", index=False)
    check.findings.to_csv(snakemake.output.findings, sep="\t", index=False)
