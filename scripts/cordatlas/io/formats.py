"""The count formats and orientations a sample sheet may name, the demo's format from a path,
and the format a file's content really has.

Light by design (standard library only at import; `sniff_format` imports h5py when it opens an
HDF5 file): the Snakefile imports it while parsing.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from cordatlas.errors import UserInputError

__all__ = [
    "COUNT_FORMATS",
    "FORMATS",
    "ORIENTATIONS",
    "describe_format",
    "infer_format",
    "sniff_format",
]

#: Formats the readers read and the writers write.
COUNT_FORMATS: tuple[str, ...] = ("10x_h5", "10x_mtx", "h5ad", "loom", "delimited")
#: Values of the sample sheet's `format` column.
FORMATS: tuple[str, ...] = ("auto", *COUNT_FORMATS)
#: Values of the sample sheet's `orientation` column (delimited text only).
ORIENTATIONS: tuple[str, ...] = ("auto", "genes_x_cells", "cells_x_genes")


def infer_format(path: str) -> str:
    """The format a demo path is written in when the sample sheet says `auto` (from its name)."""
    name = path.lower().rstrip("/")
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5"):
        return "10x_h5"
    if name.endswith(".loom"):
        return "loom"
    if re.search(r"\.(csv|tsv|txt)(\.gz)?$", name):
        return "delimited"
    if "." not in Path(name).name:
        return "10x_mtx"
    raise UserInputError(
        f"cannot infer the format of {path!r}; set the sample sheet's `format` to one of "
        f"{', '.join(COUNT_FORMATS)}."
    )


#: What `sniff_format` calls a file, for messages: the count formats, then what is none of them.
FORMAT_NAMES = {
    "10x_h5": "a 10x .h5 (Cell Ranger HDF5) file",
    "10x_mtx": "a 10x Matrix Market file or archive",
    "h5ad": "an h5ad (AnnData) file",
    "loom": "a loom file",
    "delimited": "a text table",
    "empty": "empty (0 bytes)",
    "hdf5": "an HDF5 file of no layout this workflow reads",
    "zip": "a zip archive",
    "binary": "binary data of no format this workflow reads",
    "gzip_damaged": "a gzip file whose data do not decompress",
}

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Bytes read to tell text from binary (and decompressed from the start of a gzip file).
_SNIFF_BYTES = 65536


def describe_format(kind: str) -> str:
    """A `sniff_format` result (or a count format) in words, e.g. "an h5ad (AnnData) file"."""
    return FORMAT_NAMES.get(kind, kind)


def sniff_format(path: str | Path) -> str:
    """What a file's content is, whatever its name says.

    Returns one of `COUNT_FORMATS` (a folder is ``10x_mtx``; so are a Matrix Market file and a
    tar archive, plain or gzipped), or ``"empty"``, ``"hdf5"`` (HDF5 of another layout, or one
    HDF5 cannot open), ``"zip"``, ``"gzip_damaged"`` (the first 64 KiB do not decompress) or
    ``"binary"``; ``gzip_damaged``: the first 64 KiB of a gzip file do not decompress (a file cut
    short later sniffs as its content). HDF5 files are told apart by their top level: AnnData's ``encoding-type`` or
    X/obs/var groups (h5ad), a ``matrix`` dataset with ``row_attrs``/``col_attrs`` (loom), a
    ``matrix`` group or per-genome groups with ``barcodes`` and ``indptr`` (10x).
    """
    path = Path(path)
    if path.is_dir():
        return "10x_mtx"
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head:
        return "empty"
    if head.startswith(_HDF5_SIGNATURE):
        return _sniff_hdf5(path)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        try:  # what the first bytes decompress to; a file cut short later still sniffs
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _SNIFF_BYTES)
        except zlib.error:
            return "gzip_damaged"
    return _sniff_plain(head)


def _sniff_plain(head: bytes) -> str:
    if len(head) > 262 and head[257:262] == b"ustar":
        return "10x_mtx"  # a tar archive, read as a packed Matrix Market folder
    if head.startswith(b"%%MatrixMarket"):
        return "10x_mtx"
    return "binary" if b"\x00" in head else "delimited"


def _sniff_hdf5(path: Path) -> str:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError:
        return "hdf5"
    with handle as f:
        if f.attrs.get("encoding-type") in ("anndata", b"anndata") or {"X", "obs", "var"} <= set(f):
            return "h5ad"
        matrix = f.get("matrix")
        if isinstance(matrix, h5py.Dataset) and {"row_attrs", "col_attrs"} <= set(f):
            return "loom"
        groups = [f[k] for k in f if isinstance(f[k], h5py.Group)]
        if any({"barcodes", "indptr"} <= set(g) for g in groups):
            return "10x_h5"
    return "hdf5"
