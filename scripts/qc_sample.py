"""Adapter for rule qc_sample: metrics, thresholds, doublets and per-cell reasons for one sample."""

import anndata as ad
import pandas as pd

from cordatlas.checks import check_cells_genes, check_table
from cordatlas.io.stage import write_stage
from cordatlas.logs import rule_logging
from cordatlas.qc.sample import CELL_COLUMNS, THRESHOLD_COLUMNS, run_sample_qc

#: The summary columns summarise_qc and the report read.
SUMMARY_COLUMNS = ("sample", "cells_in", "cells_out", "dropped_sample", "small_sample")

with rule_logging(snakemake.log[0]) as log:
    sample = snakemake.wildcards.sample
    result = run_sample_qc(
        ad.read_h5ad(snakemake.input.h5ad),
        sample=sample,
        params=snakemake.params.qc,
        fixed=snakemake.params.fixed,
        seed=snakemake.params.seed,
        on_small_sample=snakemake.params.on_small_sample,
    )
    log.info("sample %s: %s", sample, result.summary)
    out = snakemake.output
    fix = f"see {out.cells} (column qc_reasons) and {out.thresholds}"
    # a dropped sample (on_small_sample: drop) and one summarise_qc stops the run for ("fail")
    # may hold no cell; any other sample must give the merge cells
    excused = result.summary["dropped_sample"] or result.summary["small_sample"] == "fail"
    check_cells_genes(
        result.adata,
        out.h5ad,
        min_cells=0 if excused else 1,
        require_obs=("sample", *CELL_COLUMNS),
        counts="X",
        what=" after QC",
        fix=f"{fix}; relax the QC thresholds, or set the sample's `on_small_sample` to `drop`",
    )
    check_table(
        result.cells,
        out.cells,
        required_columns=("sample", *CELL_COLUMNS, "passed_qc", "qc_reasons"),
        min_rows=1,
        fix=fix,
    )
    check_table(
        result.thresholds, out.thresholds, required_columns=THRESHOLD_COLUMNS, min_rows=1, fix=fix
    )
    summary = pd.DataFrame([result.summary])
    check_table(summary, out.summary, required_columns=SUMMARY_COLUMNS, min_rows=1, fix=fix)
    write_stage(result.adata, snakemake.output.h5ad)
    result.cells.to_csv(snakemake.output.cells, sep="\t")
    result.thresholds.to_csv(snakemake.output.thresholds, sep="\t", index=False)
    summary.to_csv(snakemake.output.summary, sep="\t", index=False)
