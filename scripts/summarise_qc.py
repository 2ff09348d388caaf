"""Adapter for rule summarise_qc: one table of cells in, removed per reason and out, one of thresholds."""

import pandas as pd

from cordatlas.logs import rule_logging

with rule_logging(snakemake.log[0]) as log:
    summary = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.summaries])
    thresholds = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.thresholds])
    summary.to_csv(snakemake.output.summary, sep="\t", index=False)
    thresholds.to_csv(snakemake.output.thresholds, sep="\t", index=False)
    log.info("QC: %d cells in, %d out", summary["cells_in"].sum(), summary["cells_out"].sum())
