"""Adapter for rule plot_qc_overview: cells kept and removed per sample, by reason."""

import pandas as pd

from cordatlas.logs import rule_logging
from cordatlas.plotting.qc import plot_qc_overview

with rule_logging(snakemake.log[0]):
    cells = pd.concat(
        pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""])
        for p in snakemake.input.cells
    )
    plot_qc_overview(cells, path=snakemake.output[0])
