"""The plain scanpy script a user writes by hand, timed step by step (the benchmark's baseline).

It runs scanpy's defaults in one process on the same sample files as the workflow: read each
10x h5 and concatenate, QC metrics and filtering, normalize_total + log1p, highly variable
genes, PCA, neighbours, Leiden, UMAP and Wilcoxon markers. No doublets, no integration, no
annotation, no comparison: it is the floor a workflow's atlas path is measured against.

Run: ``python -m cordatlas.benchmark.plain --samples SHEET --root DIR --out TIMINGS.tsv``;
``--warm-up`` runs the same steps on a small random study first (numba's caches, untimed).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

__all__ = ["PLAIN_STEPS", "WARM_UP_CELLS", "main", "run_plain", "warm_up"]

#: The script's steps, in order, with the workflow stage each one stands beside.
PLAIN_STEPS = {
    "read": "read",
    "qc": "qc",
    "normalise": "normalise",
    "hvg": "normalise",
    "pca": "integrate",
    "neighbors": "cluster",
    "leiden": "cluster",
    "umap": "cluster",
    "markers": "markers",
}

#: The thresholds a hand-written script would use (scanpy's tutorial values).
MIN_GENES = 200
MIN_CELLS = 3
MAX_PCT_MT = 20.0


def _peak_gb() -> float:
    """This process's peak resident memory so far, in GB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_plain(paths: Sequence[str | Path], seed: int = 0) -> pd.DataFrame:
    """Run the plain script on 10x h5 files; one row per step: seconds, peak GB so far, cells."""
    import anndata as ad
    import scanpy as sc

    def read() -> ad.AnnData:
        parts = {}
        for path in paths:
            part = sc.read_10x_h5(str(path))
            part.var_names_make_unique()
            parts[Path(path).stem] = part
        return ad.concat(parts, label="sample", index_unique="-")

    return _run_steps(read, seed)


def warm_up(seed: int = 0) -> pd.DataFrame:
    """The same steps on a small random study, to fill numba's on-disk caches before timing.

    pynndescent and umap-learn compile their numba functions on first use and cache some of
    them beside their sources; a user who has run the script before does not pay for those
    again (the rest compile in every process, for the user too; docs/performance.md).
    9,000 cells is above scanpy's 8,192-cell switch from exact neighbours to pynndescent.
    """
    import anndata as ad
    import numpy as np
    from scipy import sparse

    def read() -> ad.AnnData:
        counts = np.random.default_rng(seed).poisson(0.3, size=(WARM_UP_CELLS, 2500))
        adata = ad.AnnData(sparse.csr_matrix(counts.astype(np.float32)))
        adata.var_names = [f"G{i}" for i in range(adata.n_vars)]
        return adata

    return _run_steps(read, seed)


#: Cells of the warm-up study (above scanpy's exact-neighbours limit of 8,192).
WARM_UP_CELLS = 9000


def _run_steps(read_study: Callable, seed: int) -> pd.DataFrame:
    import scanpy as sc

    rows: list[dict] = []
    state: dict = {}

    def step(name: str, work: Callable[[], None]) -> None:
        start = time.perf_counter()
        work()
        rows.append(
            {
                "step": name,
                "stage": PLAIN_STEPS[name],
                "s": round(time.perf_counter() - start, 2),
                "peak_gb": round(_peak_gb(), 3),
                "n_cells": state["adata"].n_obs,
            }
        )

    def read() -> None:
        state["adata"] = read_study()

    def qc() -> None:
        adata = state["adata"]
        adata.var["mt"] = adata.var_names.str.startswith("MT-")
        sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], inplace=True, percent_top=None)
        sc.pp.filter_cells(adata, min_genes=MIN_GENES)
        sc.pp.filter_genes(adata, min_cells=MIN_CELLS)
        state["adata"] = adata[adata.obs["pct_counts_mt"] < MAX_PCT_MT].copy()

    def normalise() -> None:
        sc.pp.normalize_total(state["adata"])
        sc.pp.log1p(state["adata"])

    def run(name: str, function: Callable, **kwargs) -> Callable[[], None]:
        return lambda: function(state["adata"], **kwargs)

    step("read", read)
    step("qc", qc)
    step("normalise", normalise)
    step("hvg", run("hvg", sc.pp.highly_variable_genes, n_top_genes=2000))
    step("pca", run("pca", sc.pp.pca, random_state=seed))
    step("neighbors", run("neighbors", sc.pp.neighbors, random_state=seed))
    step(
        "leiden",
        run("leiden", sc.tl.leiden, flavor="igraph", n_iterations=2, random_state=seed),
    )
    step("umap", run("umap", sc.tl.umap, random_state=seed))
    step("markers", run("markers", sc.tl.rank_genes_groups, groupby="leiden", method="wilcoxon"))
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", help="sample sheet: the path column is read")
    parser.add_argument("--out", required=True, help="timings table to write (TSV)")
    parser.add_argument("--root", default=".", help="folder the sheet's relative paths start in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--warm-up",
        action="store_true",
        help="run the steps on a small random study instead (fills numba's caches; see warm_up)",
    )
    args = parser.parse_args(argv)
    if args.warm_up:
        timings = warm_up(seed=args.seed)
    elif args.samples is None:
        parser.error("--samples is required unless --warm-up is given")
    else:
        sheet = pd.read_csv(args.samples, sep="\t")
        paths = [Path(args.root) / p for p in sheet["path"].drop_duplicates()]
        timings = run_plain(paths, seed=args.seed)
    timings.to_csv(args.out, sep="\t", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
