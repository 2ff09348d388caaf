# Config and sample-sheet validation, and the input functions every rule shares.
import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(workflow.basedir).parent / "scripts"))

from cordatlas.config import (
    check_replicates,
    read_samples,
    read_schema,
    sample_metadata,
    validate_config,
)
from cordatlas.io.download import cache_path
from cordatlas.design import DESIGN_FACTORS
from cordatlas.errors import UserInputError
from cordatlas.compare.pseudobulk import read_plan
from cordatlas.demo.simulate import infer_format

SCHEMAS = Path(workflow.basedir) / "schemas"

try:
    config.update(validate_config(config, read_schema(SCHEMAS / "config.schema.yaml")))
    SAMPLES = read_samples(
        config["samples"],
        read_schema(SCHEMAS / "samples.schema.yaml"),
        contrast=config["contrast"],
    )
    check_replicates(SAMPLES, replicate_key=config["comparison"]["replicate_key"])
except UserInputError as err:
    raise WorkflowError(f"\n{err}") from None

#: Every config section as a frozen parameter object; rules pass the sections they use.
PARAMS = WorkflowParams.from_config(config)


wildcard_constraints:
    sample="|".join(re.escape(s) for s in SAMPLES.index),
    cell_type=SAFE_NAME_PATTERN,


DEMO_DIR = Path(config["demo"]["outdir"])
DOWNLOAD_DIR = Path(config["ingest"]["download_dir"])
# Downloads are cached per URL, so two samples pooled in one remote file download it once.
URL_OF_CACHE = {
    str(cache_path(url, DOWNLOAD_DIR)): url for url in SAMPLES["url"].dropna().unique()
}


def is_demo_path(path):
    """Whether a sample's path is written by the simulator (it lies under demo.outdir)."""
    return pd.notna(path) and DEMO_DIR in Path(path).parents


DEMO_SAMPLES = SAMPLES[SAMPLES["path"].map(is_demo_path)]
DEMO_TRUTH = [
    str(DEMO_DIR / "truth" / f"{name}.tsv")
    for name in (
        "truth_cells",
        "truth_de",
        "truth_composition",
        "truth_condition_composition",
        "truth_genes",
    )
]


def demo_format(path, fmt):
    """The format the simulator writes a demo path in (`auto` resolved from the name)."""
    return infer_format(path) if fmt == "auto" else fmt


def shipped_file(path):
    """A config path, read from the working directory or else from this repository (shipped files)."""
    candidate = Path(path)
    shipped = Path(workflow.basedir).parent / candidate
    if candidate.exists() or candidate.is_absolute() or not shipped.exists():
        return str(candidate)
    return str(shipped)


def optional_file(path):
    """An input that is only there when the config names it."""
    return [] if path is None else path


def sample_source(wildcards):
    """The file or folder holding one sample's counts (a cached download for url rows)."""
    row = SAMPLES.loc[wildcards.sample]
    if pd.notna(row["url"]):
        return str(cache_path(row["url"], DOWNLOAD_DIR))
    return row["path"]


def sample_row(wildcards):
    """One sample-sheet row as a plain dict (NA as None) for a rule's params."""
    row = SAMPLES.loc[wildcards.sample]
    return {k: (None if pd.isna(v) else v) for k, v in row.items()}


def input_mb(input, factor, floor=1000):
    """Memory for a job: `factor` times its inputs' size, at least `floor` MB."""
    size = sum(
        (
            sum(f.stat().st_size for f in Path(p).rglob("*"))
            if Path(p).is_dir()
            else Path(p).stat().st_size
        )
        for p in input
    )
    return max(floor, int(factor * size / 1e6))


def de_tables(wildcards):
    """Per-cell-type DE tables the plan asks for (known once aggregate_pseudobulk has run)."""
    plan = read_plan(checkpoints.aggregate_pseudobulk.get().output.plan)
    folders = {"pseudobulk_deseq2": "pseudobulk", "cell_level_wilcoxon": "cell_level"}
    return [
        f"results/de/{folders[method]}/{slug}.tsv"
        for slug, method in zip(plan["slug"], plan["method"])
        if method in folders
    ]


def all_outputs():
    """What `snakemake` builds by default."""
    outputs = [
        "results/qc/qc_summary.tsv",
        "results/qc/qc_thresholds.tsv",
        "results/qc/qc_overview.png",
        *expand("results/qc/{sample}/qc.png", sample=SAMPLES.index),
        "results/merge/merge_summary.tsv",
        "results/design/design.tsv",
        "results/design/design_findings.tsv",
        "results/atlas.h5ad",
        "results/cluster/cluster_sizes.tsv",
        "results/cluster/umap.png",
        "results/cluster/markers.tsv",
        "results/cluster/markers_dotplot.png",
        "results/annotate/cluster_labels.tsv",
        "results/annotate/integration_metrics.tsv",
        "results/de/de_summary.tsv",
        "results/composition/composition_tests.tsv",
        "results/signatures/signature_tests.tsv",
        "results/signatures/development_axis.tsv",
        "results/enrichment/enrichment.tsv",
    ]
    if not DEMO_SAMPLES.empty:
        outputs += DEMO_TRUTH
    return outputs
