# Config and sample-sheet validation, and the input functions every rule shares.
# Only light modules are imported here (no anndata, h5py or scanpy while Snakemake parses).
import os
import re
import sys
from pathlib import Path

import pandas as pd

# This checkout's package, for the Snakefile and, through PYTHONPATH (inherited by every job,
# locally and on a cluster node, where the Snakefile is parsed again), for each job's script: a
# job never runs library code from another copy of cordatlas that pip installed elsewhere.
# (PYTHONPATH is set here, not read, so it needs no envvars directive.)
PACKAGE_ROOT = str(Path(workflow.basedir).parent / "scripts")
sys.path.insert(0, PACKAGE_ROOT)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [
            PACKAGE_ROOT,
            *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
        ]
    )
)
# numba (scanpy, pynndescent, UMAP) caches compiled functions beside their source or, where
# the installation is read-only, in the home folder's cache, which a cluster node may not have
# writable: every job then compiles them again (about 40 s per job here). One cache beside this
# checkout, shared by all its studies, unless the user chose one.
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(workflow.basedir).parent / ".snakemake" / "numba_cache")
)

from cordatlas.config import (
    check_covariates,
    check_replicates,
    read_config_file,
    read_samples,
    read_schema,
    validate_config,
)
from cordatlas.errors import UserInputError
from cordatlas.io.download import cache_path
from cordatlas.io.formats import infer_format
from cordatlas.params import WorkflowParams
from cordatlas.study import in_study, study_dir
from cordatlas.vocabulary import SAFE_NAME_PATTERN

SCHEMAS = Path(workflow.basedir) / "schemas"

# The config files are parsed here first: Snakemake's own loader names no file or line for a
# YAML error. Files given with --configfile were already read by Snakemake's command line
# (a syntax error there stops it before this file runs); they are checked for what it accepts
# silently (a key given twice).
CONFIG_FILE = "config/config.yaml"
CONFIG_FILES = [str(p) for p in workflow.config_settings.configfiles]
if os.path.exists(CONFIG_FILE):
    CONFIG_FILES.insert(0, CONFIG_FILE)
try:
    for path in CONFIG_FILES:
        read_config_file(path)
except UserInputError as err:
    raise WorkflowError(f"\n{err}") from None


configfile: CONFIG_FILE


try:
    config.update(validate_config(config, read_schema(SCHEMAS / "config.schema.yaml")))
    SAMPLES = read_samples(
        config["samples"],
        read_schema(SCHEMAS / "samples.schema.yaml"),
        contrast=config["contrast"],
    )
    check_replicates(SAMPLES, replicate_key=config["comparison"]["replicate_key"])
    check_covariates(
        SAMPLES,
        config["comparison"]["covariates"],
        replicate_key=config["comparison"]["replicate_key"],
    )
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

# Each study's outputs are its own: the demo's at the top level (results/, logs/, benchmarks/),
# any other sheet's under studies/<sheet name>/ unless config study_dir says otherwise.
try:
    STUDY_DIR = study_dir(
        config["study_dir"],
        sheet=config["samples"],
        demo_only=len(DEMO_SAMPLES) == len(SAMPLES),
    )
except UserInputError as err:
    raise WorkflowError(f"\n{err}") from None
# The resolved folder, so captions and reports can tell the demo (".") from a real study.
config["study_dir"] = STUDY_DIR


def study_path(path):
    """A results/, logs/ or benchmarks/ path inside this study's folder."""
    return in_study(STUDY_DIR, path)


DEMO_TRUTH = [
    str(DEMO_DIR / "truth" / f"{name}.tsv")
    for name in (
        "truth_cells",
        "truth_de",
        "truth_composition",
        "truth_condition_composition",
        "truth_genes",
        "truth_samples",
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


#: The folders the two DE rules write (one table per tested cell type in each), as named inputs.
DE_FOLDERS = {
    "pseudobulk": study_path("results/de/pseudobulk"),
    "cell_level": study_path("results/de/cell_level"),
}
#: Files in those folders for Snakemake's report (slugs are safe names, so a pattern never
#: matches inside a sub-folder).
_SLUG = f"{{cell_type,{SAFE_NAME_PATTERN}}}"
DE_REPORT_PATTERNS = {
    "table": f"{_SLUG}.tsv",
    "volcano": f"figures/{_SLUG}_volcano.png",
    "heatmap": f"figures/{_SLUG}_heatmap.png",
}


def all_outputs():
    """What `snakemake` builds by default."""
    outputs = [
        study_path("results/qc/qc_summary.tsv"),
        study_path("results/qc/qc_thresholds.tsv"),
        study_path("results/qc/qc_overview.png"),
        *expand(study_path("results/qc/{sample}/qc.png"), sample=SAMPLES.index),
        study_path("results/merge/merge_summary.tsv"),
        study_path("results/design/design.tsv"),
        study_path("results/design/design_findings.tsv"),
        study_path("results/atlas.h5ad"),
        study_path("results/cluster/cluster_sizes.tsv"),
        study_path("results/cluster/umap.png"),
        study_path("results/cluster/markers.tsv"),
        study_path("results/cluster/markers_dotplot.png"),
        study_path("results/annotate/cluster_labels.tsv"),
        study_path("results/annotate/integration_metrics.tsv"),
        study_path("results/de/de_summary.tsv"),
        study_path("results/composition/composition_tests.tsv"),
        study_path("results/signatures/signature_tests.tsv"),
        study_path("results/signatures/development_axis.tsv"),
        study_path("results/signatures/cycling_tests.tsv"),
        study_path("results/compartments/subset_composition.tsv"),
        study_path("results/compartments/compartment_adjusted.tsv"),
        study_path("results/enrichment/enrichment.tsv"),
        study_path("results/findings.tsv"),
        study_path("results/report/index.html"),
    ]
    if not DEMO_SAMPLES.empty:
        outputs += DEMO_TRUTH
    return outputs
