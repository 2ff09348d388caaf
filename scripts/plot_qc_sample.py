"""Adapter for rule plot_qc_sample: one sample's QC distributions with the thresholds applied."""

import pandas as pd

from cordatlas.logs import rule_logging
from cordatlas.plotting.qc import plot_qc_sample

with rule_logging(snakemake.log[0]):
    plot_qc_sample(
        pd.read_csv(snakemake.input.cells, sep="\t", keep_default_na=False, na_values=[""]),
        pd.read_csv(snakemake.input.thresholds, sep="\t"),
        sample=snakemake.wildcards.sample,
        path=snakemake.output[0],
    )
