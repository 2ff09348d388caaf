"""Adapter for rule build_report: the study report page from the workflow's tables and figures."""

from pathlib import Path

import snakemake as snakemake_package

from cordatlas.io.download import cache_path
from cordatlas.logs import rule_logging
from cordatlas.report.inputs import ReportInputs
from cordatlas.report.render import build_report, read_sheet


def paths(value):
    """A named input as a list of paths (a single path or a list of them)."""
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


with rule_logging(snakemake.log[0]) as log:
    inputs = ReportInputs.from_mapping(dict(snakemake.input.items()))
    # results/report/index.html -> the study folder holding benchmarks/
    inputs.benchmarks = str(Path(snakemake.output.html).parents[2] / "benchmarks")
    sheet = read_sheet(inputs.sheet)
    downloads = Path(snakemake.config["ingest"]["download_dir"])
    cached = [str(cache_path(u, downloads)) for u in sheet.get("url", []) if u]
    inputs.checksummed = [
        *paths(snakemake.input.panel),
        *paths(snakemake.input.extra_panel),
        *paths(snakemake.input.library),
        *paths(snakemake.input.extra_sets),
        *cached,
    ]
    page = build_report(
        inputs,
        snakemake.output.html,
        config=snakemake.config,
        snakemake_version=getattr(snakemake_package, "__version__", None),
    )
    size = sum(f.stat().st_size for f in page.parent.rglob("*") if f.is_file())
    log.info("report: %s (%.1f MB with its figures)", page, size / 1e6)
