"""Provenance: package versions, input checksums, seeds, and time and memory per rule from benchmarks/."""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

#: Distributions whose versions the report lists (the science and the machinery).
PACKAGES = (
    "cordatlas", "scanpy", "anndata", "numpy", "scipy", "pandas", "h5py", "scikit-learn",
    "pydeseq2", "harmonypy", "leidenalg", "igraph", "umap-learn", "pynndescent", "numba",
    "celltypist", "matplotlib", "snakemake", "jinja2", "itables",
)  # fmt: skip


def package_versions(names: Iterable[str] = PACKAGES) -> pd.DataFrame:
    """Installed version of each distribution ('not installed' where absent), and Python's."""
    rows = [("python", platform.python_version())]
    for name in names:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return pd.DataFrame(rows, columns=["package", "version"])


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checksums(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """sha256 and size of each input file (every file inside a folder); 'missing' if absent."""
    rows = []
    for given in dict.fromkeys(str(p) for p in paths if p):
        path = Path(given)
        files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".")) \
            if path.is_dir() else [path]  # fmt: skip
        for file in files:
            if file.is_file():
                rows.append((str(file), file.stat().st_size, file_sha256(file)))
            else:
                rows.append((str(file), 0, "missing"))
    return pd.DataFrame(rows, columns=["file", "bytes", "sha256"])


def sample_files(sheet: pd.DataFrame | None, workdir: str | os.PathLike[str] = ".") -> list[str]:
    """The count files (or folders) the sample sheet names by path (relative ones from `workdir`)."""
    if sheet is None or "path" not in sheet:
        return []
    root = Path(workdir)
    return [
        str(p) if root == Path(".") or Path(p).is_absolute() else str(root / p)
        for p in sheet["path"]
        if isinstance(p, str) and p
    ]


def seeds(config: Mapping[str, Any], *, synthetic: bool) -> pd.DataFrame:
    """Every seed the run used, by config key."""
    rows = [("atlas.seed", (config.get("atlas") or {}).get("seed"))]
    if synthetic:
        rows.append(("demo.seed", (config.get("demo") or {}).get("seed")))
    return pd.DataFrame(rows, columns=["config key", "seed"])


def benchmarks(folder: str | os.PathLike[str] | None) -> pd.DataFrame | None:
    """Per rule: jobs, wall time (total and longest) and peak memory, from Snakemake benchmarks."""
    if folder is None or not Path(folder).is_dir():
        return None
    rows = []
    for file in sorted(Path(folder).rglob("*.tsv")):
        table = pd.read_csv(file, sep="\t")
        if table.empty or "s" not in table:
            continue
        rule = file.relative_to(folder).parts[0]
        rss = table["max_rss"] if "max_rss" in table else pd.Series([float("nan")])
        rows.append((rule, file.stem, float(table["s"].iloc[-1]),
                     pd.to_numeric(rss, errors="coerce").iloc[-1]))  # fmt: skip
    if not rows:
        return None
    jobs = pd.DataFrame(rows, columns=["rule", "job", "s", "max_rss_mb"])
    summary = jobs.groupby("rule", sort=False).agg(
        jobs=("job", "size"),
        total_s=("s", "sum"),
        longest_s=("s", "max"),
        peak_rss_mb=("max_rss_mb", "max"),
    )
    return summary.reset_index().sort_values("total_s", ascending=False, kind="mergesort")
