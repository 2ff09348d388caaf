"""Adapter for rule summarise_qc: one table of cells in, removed per reason and out, one of thresholds."""

from pathlib import Path

import pandas as pd

from cordatlas.checks import check_table
from cordatlas.logs import rule_logging
from cordatlas.qc.sample import THRESHOLD_COLUMNS, check_small_samples

with rule_logging(snakemake.log[0]) as log:
    summary = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.summaries])
    thresholds = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.thresholds])
    log.info("QC: %d cells in, %d out", summary["cells_in"].sum(), summary["cells_out"].sum())
    # the gate for samples left too small: each sample's own tables stay where the message points
    check_small_samples(
        summary,
        qc_dir=str(Path(snakemake.input.summaries[0]).parent.parent),
        min_cells=snakemake.params.min_cells,
    )
    fix = "rerun qc_sample for the samples missing (snakemake --forcerun qc_sample)"
    check_table(
        summary,
        snakemake.output.summary,
        required_columns=("sample", "cells_in", "cells_out", "dropped_sample"),
        min_rows=len(snakemake.input.summaries),
        what=" (one per sample)",
        fix=fix,
    )
    check_table(
        thresholds,
        snakemake.output.thresholds,
        required_columns=THRESHOLD_COLUMNS,
        min_rows=len(snakemake.input.thresholds),
        fix=fix,
    )
    summary.to_csv(snakemake.output.summary, sep="\t", index=False)
    thresholds.to_csv(snakemake.output.thresholds, sep="\t", index=False)
