"""Writers for the count-matrix formats the workflow ingests (10x h5/mtx, h5ad, loom, csv/tsv)."""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from cordatlas.errors import UserInputError
from cordatlas.io.formats import COUNT_FORMATS

__all__ = [
    "COUNT_FORMATS",
    "Orientation",
    "write_10x_h5",
    "write_10x_mtx",
    "write_counts",
    "write_delimited",
    "write_h5ad",
    "write_loom",
]

Orientation = Literal["genes_x_cells", "cells_x_genes"]

_FEATURE_TYPE = "Gene Expression"
#: gzip level of text outputs: 9 (gzip's default) is several times slower for ~5 % smaller files.
_GZIP_LEVEL = 6


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _counts_csr(adata: ad.AnnData) -> sp.csr_matrix:
    """Return ``adata.X`` as a canonical CSR matrix of int32 counts (cells x genes)."""
    x = adata.X
    if x is None:
        raise UserInputError("AnnData has no X: the writers need a cells x genes count matrix.")
    matrix = sp.csr_matrix(x)
    data = np.asarray(matrix.data)
    if data.size:
        if not np.all(np.isfinite(data)) or np.any(data < 0):
            raise UserInputError(
                "count matrix holds negative or non-finite values; write raw UMI counts."
            )
        if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
            raise UserInputError(
                "count matrix holds non-integer values (normalised data?); write raw UMI counts."
            )
        if data.max() > np.iinfo(np.int32).max:
            raise UserInputError("a count exceeds the int32 range of the 10x formats.")
    out = sp.csr_matrix(
        (data.astype(np.int32), matrix.indices.copy(), matrix.indptr.copy()),
        shape=matrix.shape,
    )
    out.sum_duplicates()
    out.sort_indices()
    return out


def _gene_ids(adata: ad.AnnData) -> list[str]:
    """Gene ids from ``var['gene_ids']``, falling back to the gene symbols."""
    if "gene_ids" in adata.var.columns:
        return [str(g) for g in adata.var["gene_ids"]]
    return [str(g) for g in adata.var_names]


def _bytes_array(values: list[str]) -> np.ndarray:
    """Fixed-length byte strings, as Cell Ranger stores them."""
    encoded = [v.encode("utf-8") for v in values]
    width = max((len(v) for v in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` that replaces ``path`` only on success.

    The temporary name keeps the suffix so that libraries which look at the extension
    (anndata, loompy) treat it like the final file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{''.join(path.suffixes)}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # some writers refuse to overwrite; they get a fresh name
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def _open_text_out(path: Path) -> Iterator[IO[str]]:
    """Open ``path`` for text writing; gzip (byte-stable, mtime 0) when it ends with ``.gz``."""
    if path.name.endswith(".gz"):
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_GZIP_LEVEL
            ) as gz,
            io.TextIOWrapper(gz, encoding="utf-8", newline="") as handle,
        ):
            yield handle
    else:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            yield handle


def _write_lines(path: Path, lines: list[str]) -> None:
    with _atomic_path(path) as tmp, _open_text_out(tmp) as handle:
        handle.write("".join(f"{line}\n" for line in lines))


# --------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------
def write_10x_h5(
    adata: ad.AnnData, path: str | os.PathLike[str], *, version: int = 3, genome: str = "GRCh38"
) -> Path:
    """Write raw counts as a Cell Ranger HDF5 feature-barcode matrix.

    Parameters
    ----------
    adata
        Raw integer counts, cells x genes; ``obs_names`` are barcodes, ``var_names`` gene
        symbols, ``var['gene_ids']`` gene ids (the symbols are used where it is absent).
    path
        Output ``.h5`` file, replaced atomically.
    version
        ``3`` writes the Cell Ranger >= 3 layout (group ``matrix`` with a ``features``
        subgroup); ``2`` writes the Cell Ranger 1.2-2.x layout (one group named after
        ``genome`` holding ``genes`` and ``gene_names``).
    genome
        Genome name stored in ``features/genome`` (v3) or used as the group name (v2).

    Returns
    -------
    Path
        The path written. The matrix is stored as CSC genes x cells with
        ``shape = [n_genes, n_cells]`` and byte strings, as Cell Ranger does, so that
        :func:`scanpy.read_10x_h5` reads it back unchanged.
    """
    if version not in (2, 3):
        raise UserInputError(f"10x h5 version must be 2 or 3, got {version!r}.")
    path = Path(path)
    counts = _counts_csr(adata)
    n_cells, n_genes = counts.shape
    barcodes = _bytes_array([str(b) for b in adata.obs_names])
    ids = _bytes_array(_gene_ids(adata))
    names = _bytes_array([str(g) for g in adata.var_names])
    shape = np.array([n_genes, n_cells], dtype=np.int32)
    with _atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        if version == 3:
            f.attrs["filetype"] = "matrix"
            f.attrs["version"] = np.int64(2)  # Cell Ranger 3's matrix-file version
            f.attrs["chemistry_description"] = "Single Cell 3' v3"
            f.attrs["library_ids"] = np.array([b"simulated"])
            f.attrs["original_gem_groups"] = np.array([1], dtype=np.int64)
            group = f.create_group("matrix")
            features = group.create_group("features")
            features.create_dataset("id", data=ids)
            features.create_dataset("name", data=names)
            features.create_dataset("feature_type", data=_bytes_array([_FEATURE_TYPE] * n_genes))
            features.create_dataset("genome", data=_bytes_array([genome] * n_genes))
            features.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
        else:
            f.attrs["filetype"] = "matrix"
            f.attrs["chemistry_description"] = "Single Cell 3' v2"
            group = f.create_group(genome)
            group.create_dataset("genes", data=ids)
            group.create_dataset("gene_names", data=names)
        group.create_dataset("barcodes", data=barcodes)
        group.create_dataset("data", data=counts.data, compression="gzip")
        group.create_dataset("indices", data=counts.indices.astype(np.int64), compression="gzip")
        group.create_dataset("indptr", data=counts.indptr.astype(np.int64))
        group.create_dataset("shape", data=shape)
    return path


def write_10x_mtx(
    adata: ad.AnnData, directory: str | os.PathLike[str], *, version: int = 3
) -> Path:
    """Write raw counts as a Cell Ranger Matrix Market directory.

    Parameters
    ----------
    adata
        Raw integer counts, cells x genes (see :func:`write_10x_h5`).
    directory
        Output directory, created if needed; each file in it is replaced atomically.
    version
        ``3``: ``matrix.mtx.gz``, ``barcodes.tsv.gz``, ``features.tsv.gz`` (id, name,
        ``Gene Expression``). ``2``: uncompressed ``matrix.mtx``, ``barcodes.tsv``,
        ``genes.tsv`` (id, name).

    Returns
    -------
    Path
        The directory, readable with :func:`scanpy.read_10x_mtx`.
    """
    if version not in (2, 3):
        raise UserInputError(f"10x mtx version must be 2 or 3, got {version!r}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts = _counts_csr(adata)
    ids = _gene_ids(adata)
    names = [str(g) for g in adata.var_names]
    barcodes = [str(b) for b in adata.obs_names]
    suffix = ".gz" if version == 3 else ""
    # a stale file of the other layout would make readers pick the wrong one
    stale = (
        ("matrix.mtx", "barcodes.tsv", "genes.tsv")
        if version == 3
        else ("matrix.mtx.gz", "barcodes.tsv.gz", "features.tsv.gz")
    )
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    if version == 3:
        features = [f"{i}\t{n}\t{_FEATURE_TYPE}" for i, n in zip(ids, names, strict=True)]
        _write_lines(directory / "features.tsv.gz", features)
    else:
        _write_lines(
            directory / "genes.tsv", [f"{i}\t{n}" for i, n in zip(ids, names, strict=True)]
        )
    _write_lines(directory / f"barcodes.tsv{suffix}", barcodes)
    matrix_path = directory / f"matrix.mtx{suffix}"
    genes_by_cells = counts.T.tocoo()
    with _atomic_path(matrix_path) as tmp:
        if version == 3:
            with (
                open(tmp, "wb") as raw,
                gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_GZIP_LEVEL
                ) as gz,
            ):
                scipy.io.mmwrite(gz, genes_by_cells, field="integer")
        else:
            with open(tmp, "wb") as raw:
                scipy.io.mmwrite(raw, genes_by_cells, field="integer")
    return directory


def _separator(path: Path, sep: str | None) -> str:
    if sep is not None:
        return sep
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    if name.endswith(".csv"):
        return ","
    if name.endswith((".tsv", ".txt")):
        return "\t"
    raise UserInputError(
        f"cannot tell the separator of {path}: name it .csv, .tsv or .txt (optionally .gz) "
        "or pass sep."
    )


def write_delimited(
    adata: ad.AnnData,
    path: str | os.PathLike[str],
    *,
    orientation: Orientation,
    sep: str | None = None,
) -> Path:
    """Write raw counts as a dense delimited text table (csv/tsv, gzipped for ``.gz``).

    Parameters
    ----------
    adata
        Raw integer counts, cells x genes (gene ids are not written: text tables carry
        gene symbols only).
    path
        Output file, replaced atomically; gzip-compressed when it ends with ``.gz``.
    orientation
        ``"genes_x_cells"`` is the GEO style: one row per gene, first column the gene
        symbol, header = an empty cell followed by the barcodes. ``"cells_x_genes"``: one
        row per barcode, header = an empty cell followed by the gene symbols.
    sep
        Field separator; by default ``,`` for ``.csv`` and a tab for ``.tsv``/``.txt``.

    Returns
    -------
    Path
        The path written.
    """
    if orientation not in ("genes_x_cells", "cells_x_genes"):
        raise UserInputError(
            f"orientation must be 'genes_x_cells' or 'cells_x_genes', got {orientation!r}."
        )
    path = Path(path)
    delimiter = _separator(path, sep)
    counts = _counts_csr(adata)
    cells = [str(b) for b in adata.obs_names]
    genes = [str(g) for g in adata.var_names]
    if orientation == "genes_x_cells":
        table = counts.T.tocsr()
        rows, columns = genes, cells
    else:
        table = counts
        rows, columns = cells, genes
    with _atomic_path(path) as tmp, _open_text_out(tmp) as handle:
        handle.write(delimiter.join(["", *columns]) + "\n")
        block = 512  # rows densified at a time: bounded memory for wide tables
        for start in range(0, table.shape[0], block):
            dense = table[start : start + block].toarray()
            frame = pd.DataFrame(dense, index=rows[start : start + block])
            frame.to_csv(handle, sep=delimiter, header=False, lineterminator="\n")
    return path


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike[str]) -> Path:
    """Write raw counts as ``.h5ad`` (X = CSR int32 counts; obs and var kept).

    Parameters
    ----------
    adata
        Raw integer counts, cells x genes.
    path
        Output file, replaced atomically.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    out = adata.copy()
    out.X = _counts_csr(adata)
    with _atomic_path(path) as tmp:
        out.write_h5ad(tmp, compression="gzip")
    return path


def write_loom(adata: ad.AnnData, path: str | os.PathLike[str]) -> Path:
    """Write raw counts as ``.loom`` with anndata's writer.

    Gene symbols go to the row attribute ``var_names`` (plus ``gene_ids``), barcodes to the
    column attribute ``obs_names``; the main matrix is genes x cells, as loom defines it.

    Parameters
    ----------
    adata
        Raw integer counts, cells x genes.
    path
        Output file, replaced atomically.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    out = ad.AnnData(
        X=_counts_csr(adata),
        obs=pd.DataFrame(index=[str(b) for b in adata.obs_names]),
        var=pd.DataFrame({"gene_ids": _gene_ids(adata)}, index=[str(g) for g in adata.var_names]),
    )
    with _atomic_path(path) as tmp:
        out.write_loom(tmp)
    return path


def write_counts(
    adata: ad.AnnData,
    path: str | os.PathLike[str],
    *,
    format: str,
    version: int = 3,
    orientation: Orientation = "genes_x_cells",
    genome: str = "GRCh38",
) -> Path:
    """Write raw counts in one of the sample sheet's formats.

    Parameters
    ----------
    adata
        Raw integer counts, cells x genes.
    path
        Output path; a directory for ``10x_mtx``.
    format
        One of :data:`COUNT_FORMATS`: ``10x_h5``, ``10x_mtx``, ``h5ad``, ``loom``,
        ``delimited``.
    version
        Cell Ranger layout (2 or 3) for ``10x_h5`` and ``10x_mtx``; ignored otherwise.
    orientation
        Table orientation for ``delimited``; ignored otherwise.
    genome
        Genome name for ``10x_h5``.

    Returns
    -------
    Path
        The path written.
    """
    if format == "10x_h5":
        return write_10x_h5(adata, path, version=version, genome=genome)
    if format == "10x_mtx":
        return write_10x_mtx(adata, path, version=version)
    if format == "h5ad":
        return write_h5ad(adata, path)
    if format == "loom":
        return write_loom(adata, path)
    if format == "delimited":
        return write_delimited(adata, path, orientation=orientation)
    raise UserInputError(f"unknown count format {format!r}: use one of {', '.join(COUNT_FORMATS)}.")
