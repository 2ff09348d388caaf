"""Read a benchmark run's timings and write the comparison: per stage, per size, exponents.

A workflow run leaves one Snakemake ``benchmark:`` file per job (``benchmarks/<rule>/<job>.tsv``:
wall seconds ``s`` and peak resident memory ``max_rss`` in MB, among others); the plain script
leaves one row per step (:mod:`cordatlas.benchmark.plain`). Both are mapped onto the same
stages so each stage's cost can be compared, and the growth of cost with the number of cells is
summarised as the exponent b of ``seconds ~ cells^b`` (least squares on log-log, over sizes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "RULE_STAGES",
    "STAGE_ORDER",
    "exponents",
    "markdown_table",
    "read_rule_benchmarks",
    "stage_table",
]

#: The stage each workflow rule belongs to. ``read`` .. ``markers`` have a plain-script
#: counterpart; ``annotate``, ``comparison`` and ``report`` are the workflow's own.
RULE_STAGES = {
    "ingest_sample": "read",
    "merge_samples": "read",
    "qc_sample": "qc",
    "summarise_qc": "qc",
    "plot_qc_sample": "qc",
    "plot_qc_overview": "qc",
    "normalise_select_genes": "normalise",
    "integrate_samples": "integrate",
    "cluster_cells": "cluster",
    "embed_umap": "cluster",
    "find_markers": "markers",
    "annotate_cells": "annotate",
    "write_atlas": "annotate",
    "evaluate_integration": "annotate",
    "check_design": "comparison",
    "aggregate_pseudobulk": "comparison",
    "test_pseudobulk_de": "comparison",
    "test_cell_level_de": "comparison",
    "summarise_de": "comparison",
    "enrich_de": "comparison",
    "test_composition": "comparison",
    "score_signatures": "comparison",
    "test_signatures": "comparison",
    "score_development": "comparison",
    "score_cycling": "comparison",
    "test_compartments": "comparison",
    "collect_findings": "report",
    "build_report": "report",
}
#: Stages in the order a run meets them.
STAGE_ORDER = [
    "read",
    "qc",
    "normalise",
    "integrate",
    "cluster",
    "markers",
    "annotate",
    "comparison",
    "report",
]
#: Rules that are not part of analysing a study (the simulator writes the benchmark's input).
NOT_TIMED = {"simulate_demo", "download_sample"}


def read_rule_benchmarks(benchmarks: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per rule: jobs, summed job seconds, the largest job's seconds and peak GB.

    Raises
    ------
    ValueError
        A rule the stage map does not know (add it to :data:`RULE_STAGES`), or no files.
    """
    rows = []
    for path in sorted(Path(benchmarks).glob("*/*.tsv")):
        rule = path.parent.name
        if rule in NOT_TIMED:
            continue
        if rule not in RULE_STAGES:
            raise ValueError(f"rule {rule!r} has no stage in RULE_STAGES ({path})")
        table = pd.read_csv(path, sep="\t")
        rows.append(
            {
                "rule": rule,
                "s": float(table["s"].iloc[-1]),
                "max_rss_gb": float(pd.to_numeric(table["max_rss"], errors="coerce").iloc[-1])
                / 1024,
            }
        )
    if not rows:
        raise ValueError(f"no benchmark files under {benchmarks}")
    jobs = pd.DataFrame(rows)
    per_rule = jobs.groupby("rule").agg(
        jobs=("s", "size"), s=("s", "sum"), max_job_s=("s", "max"), peak_gb=("max_rss_gb", "max")
    )
    per_rule["stage"] = [RULE_STAGES[r] for r in per_rule.index]
    return per_rule.reset_index()


def stage_table(rules: pd.DataFrame, plain: pd.DataFrame) -> pd.DataFrame:
    """Per stage: workflow job seconds and peak GB beside the plain script's, and their ratio.

    `rules` is :func:`read_rule_benchmarks`' table, `plain` the plain script's timings
    (columns ``stage``, ``s``, ``peak_gb``). Workflow seconds are summed over a stage's jobs
    (jobs that ran side by side each count: this is cost, not wall time); the plain script's
    peak is its process's peak so far at the end of the stage.
    """
    workflow = rules.groupby("stage").agg(
        workflow_s=("s", "sum"), workflow_peak_gb=("peak_gb", "max")
    )
    baseline = plain.groupby("stage").agg(plain_s=("s", "sum"), plain_peak_gb=("peak_gb", "max"))
    table = workflow.join(baseline, how="outer")
    table["ratio"] = table["workflow_s"] / table["plain_s"]
    order = [s for s in STAGE_ORDER if s in table.index]
    return table.loc[order].reset_index(names="stage")


def exponents(per_size: Mapping[int, pd.DataFrame], column: str = "workflow_s") -> pd.Series:
    """Exponent b of ``seconds ~ cells^b`` per stage, over the sizes (needs two or more)."""
    if len(per_size) < 2:
        raise ValueError("an exponent needs runs at two sizes or more")
    sizes = sorted(per_size)
    stages = pd.concat([per_size[n].set_index("stage")[column] for n in sizes], axis=1)
    stages.columns = sizes
    out = {}
    for stage, seconds in stages.iterrows():
        ok = seconds.notna() & (seconds > 0)
        if ok.sum() < 2:
            continue
        slope, _ = np.polyfit(np.log(np.array(sizes)[ok]), np.log(seconds[ok].to_numpy()), 1)
        out[stage] = round(float(slope), 2)
    return pd.Series(out, name=f"exponent_{column}")


def _fmt(value: object, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame, digits: Mapping[str, int] | None = None) -> str:
    """A GitHub-markdown table of `table` (floats to 1 decimal unless `digits` says)."""
    digits = dict(digits or {})
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    lines = [header, rule]
    for row in table.itertuples(index=False):
        cells = [_fmt(v, digits.get(c, 1)) for c, v in zip(table.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise_sizes(runs: Sequence[Mapping]) -> dict[str, pd.DataFrame]:
    """Tables over all sizes from the CLI's run records (``n_cells``, ``stages``, walls)."""
    overall = pd.DataFrame(
        [
            {
                "cells": run["n_cells"],
                "workflow_wall_s": run["workflow_wall_s"],
                "atlas_path_wall_s": run["atlas_wall_s"],
                "plain_wall_s": run["plain_wall_s"],
                "ratio_whole": run["workflow_wall_s"] / run["plain_wall_s"],
                "ratio_atlas_path": run["atlas_wall_s"] / run["plain_wall_s"],
                "workflow_peak_job_gb": run["stages"]["workflow_peak_gb"].max(),
                "plain_peak_gb": run["stages"]["plain_peak_gb"].max(),
                "load_1min_before_after": "{:.1f} / {:.1f}".format(
                    run.get("load_before", float("nan")), run.get("load_after", float("nan"))
                ),
                # 0: the workflow compiled its numba functions inside its timed wall
                "workflow_numba_cache_files_before": run.get("numba_cache_files_before"),
                "plain_warm_up_s": run.get("plain_warm_up_s"),
            }
            for run in runs
        ]
    )
    tables = {"overall": overall}
    quality = [{"cells": run["n_cells"], **run.get("quality", {})} for run in runs]
    tables["quality"] = pd.DataFrame(quality)
    if len(runs) >= 2:
        per_size = {run["n_cells"]: run["stages"] for run in runs}
        tables["exponents"] = pd.concat(
            [exponents(per_size, "workflow_s"), exponents(per_size, "plain_s")], axis=1
        ).reset_index(names="stage")
    return tables
