"""Command line ``cordatlas-benchmark``: the workflow against a plain scanpy script, by size.

For each size it simulates a study with the project's simulator (8 donors, 4 cord and 4 adult,
every sample a 10x h5 file), runs the workflow with ``--cores`` (first the atlas path: ingest to
the annotated atlas with markers and the integration verdict; then the rest: comparison and
report), then the plain script (:mod:`cordatlas.benchmark.plain`) on the same files, and
writes per size the rules' benchmark files and a stage table, and over all sizes
``benchmark.md``: the ratios workflow / plain per stage and overall, and the exponent of each
stage's seconds in the number of cells.

Example: ``cordatlas-benchmark --sizes 25000 50000 100000 200000 --out bench_runs``.
Nothing here runs in the default test suite; each size takes minutes to an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml

from cordatlas.benchmark.quality import run_quality
from cordatlas.benchmark.summary import (
    markdown_table,
    read_rule_benchmarks,
    stage_table,
    summarise_sizes,
)

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[3]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
DONORS = [
    ("CB1", "cord_blood", "cord_blood", "female"),
    ("CB2", "cord_blood", "cord_blood", "male"),
    ("CB3", "cord_blood", "cord_blood", "female"),
    ("CB4", "cord_blood", "cord_blood", "male"),
    ("AD1", "adult", "peripheral_blood", "female"),
    ("AD2", "adult", "peripheral_blood", "male"),
    ("AD3", "adult", "peripheral_blood", "female"),
    ("AD4", "adult", "peripheral_blood", "male"),
]
#: The atlas path's outputs: ingest .. annotation, markers and the integration verdict.
ATLAS_TARGETS = [
    "results/atlas.h5ad",
    "results/cluster/markers.tsv",
    "results/annotate/integration_verdict.tsv",
]
VERSIONED = [
    "snakemake",
    "scanpy",
    "anndata",
    "numpy",
    "scipy",
    "numba",
    "pynndescent",
    "umap-learn",
    "leidenalg",
    "harmonypy",
    "pydeseq2",
    "illico",
    "faiss-cpu",
]


def _sheet() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "sample": d,
                "donor": d,
                "condition": c,
                "tissue": t,
                "study": "simulated_benchmark",
                "technology": "10x_3prime_v3",
                "sex": sex,
                "sorted_fraction": "none",
                "format": "10x_h5",
                "path": f"resources/demo/{d}_filtered_feature_bc_matrix.h5",
                "barcode_pattern": "",
            }
            for d, c, t, sex in DONORS
        ]
    )


def prepare(workdir: Path, n_cells: int, n_genes: int, seed: int) -> Path:
    """A study folder: the shipped config, an all-10x-h5 sheet and the size's config overlay."""
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(ROOT / "config", workdir / "config")
    _sheet().to_csv(workdir / "config" / "benchmark_samples.tsv", sep="\t", index=False)
    overlay = {
        "samples": "config/benchmark_samples.tsv",
        "demo": {"n_cells_per_sample": n_cells // len(DONORS), "n_genes": n_genes, "seed": seed},
    }
    path = workdir / "benchmark.yaml"
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return path


def _timed(command: list[str], cwd: Path, log: Path) -> float:
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed ({done.returncode}); see {log}")
    return time.perf_counter() - start


def _snakemake(workdir: Path, overlay: Path, cores: int, *targets: str) -> list[str]:
    # targets first: --configfile takes every value after it
    return [
        sys.executable,
        "-m",
        "snakemake",
        *targets,
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
        "--configfile",
        str(overlay),
    ]


def _numba_cache_files() -> int:
    """Files in the numba cache the workflow's jobs use (``workflow/rules/common.smk``)."""
    folder = Path(os.environ.get("NUMBA_CACHE_DIR", ROOT / ".snakemake" / "numba_cache"))
    return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


def run_size(
    out: Path, n_cells: int, n_genes: int, cores: int, seed: int, reference: Path | None = None
) -> dict:
    """Simulate, run the workflow (atlas path, then the rest), run the plain script; a record."""
    workdir = (out / f"cells_{n_cells}").resolve()
    overlay = prepare(workdir, n_cells, n_genes, seed)
    load_before = os.getloadavg()[0]  # other work on the machine slows every number down
    cache_files = _numba_cache_files()  # 0: the workflow compiles numba code in its timed run
    log = workdir / "benchmark.log"
    simulate_s = _timed(_snakemake(workdir, overlay, cores, "simulate_demo"), workdir, log)
    atlas_s = _timed(_snakemake(workdir, overlay, cores, *ATLAS_TARGETS), workdir, log)
    rest_s = _timed(_snakemake(workdir, overlay, cores), workdir, log)
    plain_out = workdir / "plain_timings.tsv"
    plain_script = [sys.executable, "-m", "cordatlas.benchmark.plain", "--seed", str(seed)]
    # untimed: a user who has run the script before has numba's caches filled, as the
    # workflow has after its first run in a checkout (its cache state is recorded above)
    warm_up_s = _timed(
        [*plain_script, "--warm-up", "--out", str(workdir / "plain_warm_up.tsv")], workdir, log
    )
    plain_s = _timed(
        [
            *plain_script,
            "--samples",
            str(workdir / "config" / "benchmark_samples.tsv"),
            "--root",
            str(workdir),
            "--out",
            str(plain_out),
        ],
        workdir,
        log,
    )
    rules = read_rule_benchmarks(workdir / "benchmarks")
    plain = pd.read_csv(plain_out, sep="\t")
    stages = stage_table(rules, plain)
    quality = run_quality(workdir, None if reference is None else reference / workdir.name)
    rules.to_csv(workdir / "rules.tsv", sep="\t", index=False)
    stages.to_csv(workdir / "stages.tsv", sep="\t", index=False)
    return {
        "n_cells": n_cells,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "n_genes": n_genes,
        "simulate_s": simulate_s,
        "atlas_wall_s": atlas_s,
        "workflow_wall_s": atlas_s + rest_s,
        "plain_wall_s": plain_s,
        "plain_warm_up_s": warm_up_s,
        "numba_cache_files_before": cache_files,
        "quality": quality,
        "rules": rules,
        "stages": stages,
        "plain": plain,
    }


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    memory = ""
    if Path("/proc/meminfo").exists():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024**2:.0f} GB"
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "memory": memory,
    }
    for name in VERSIONED:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = "not installed"
    return info


def write_report(out: Path, runs: Sequence[dict], command: str) -> Path:
    """``benchmark.md``: machine, command, overall table, per-size stage tables, exponents."""
    tables = summarise_sizes(runs)
    parts = ["# cordatlas benchmark", "", f"Command: `{command}`", "", "| machine | |", "|---|---|"]
    parts += [f"| {k} | {v} |" for k, v in machine().items()]
    parts += [
        "",
        "## Overall (wall seconds; the workflow's wall excludes simulating the data)",
        "",
        markdown_table(
            tables["overall"],
            {
                "ratio_whole": 2,
                "ratio_atlas_path": 2,
                "workflow_peak_job_gb": 2,
                "plain_peak_gb": 2,
            },
        ),
    ]
    parts += [
        "",
        "## Answers on the simulator (labels and DE against the truth tables)",
        "",
        markdown_table(tables["quality"], {c: 3 for c in tables["quality"].columns}),
    ]
    if "exponents" in tables:
        parts += [
            "",
            "## Exponent b of seconds ~ cells^b per stage",
            "",
            markdown_table(tables["exponents"], {"exponent_workflow_s": 2, "exponent_plain_s": 2}),
        ]
    for run in runs:
        parts += [
            "",
            f"## {run['n_cells']:,} cells: stages (job seconds summed; peak GB of the "
            "largest job, or of the plain process so far)",
            "",
            markdown_table(run["stages"], {"ratio": 2, "workflow_peak_gb": 2, "plain_peak_gb": 2}),
            "",
            f"### {run['n_cells']:,} cells: rules",
            "",
            markdown_table(run["rules"], {"peak_gb": 2}),
        ]
    path = out / "benchmark.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cordatlas-benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[25000, 50000, 100000, 200000],
        help="cells simulated per run (8 samples; default 25k 50k 100k 200k)",
    )
    parser.add_argument("--genes", type=int, default=20000, help="genes simulated (20,000)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_runs", help="folder for the runs and benchmark.md")
    parser.add_argument(
        "--reference",
        default=None,
        help="an earlier benchmark's --out folder: each size's clusters are compared (ARI)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for n_cells in args.sizes:
        reference = None if args.reference is None else Path(args.reference).resolve()
        run = run_size(out, n_cells, args.genes, args.cores, args.seed, reference)
        runs.append(run)
        record = {k: v for k, v in run.items() if not isinstance(v, pd.DataFrame)}
        (out / f"cells_{n_cells}" / "run.json").write_text(json.dumps(record, indent=1))
        write_report(out, runs, "cordatlas-benchmark " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
