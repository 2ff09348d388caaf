"""Readers of the binary and folder count formats: 10x HDF5, 10x Matrix Market, h5ad, loom.

Each returns cells x genes (CSR float32) with unique gene symbols as var_names and a
provenance record in ``uns["ingest"]``; the small helpers here are shared with
:mod:`cordatlas.io.delimited` and :mod:`cordatlas.io.ingest`.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import re
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
from anndata.utils import make_index_unique

from cordatlas.errors import UserInputError
from cordatlas.io.formats import COUNT_FORMATS, describe_format, infer_format, sniff_format

__all__ = [
    "check_file_format",
    "check_raw_counts",
    "describe_non_counts",
    "find_mtx_folder",
    "harmonise_genes",
    "read_10x_h5",
    "read_10x_mtx",
    "read_h5ad_counts",
    "read_loom_counts",
]

log = logging.getLogger(__name__)

#: Ensembl gene ids (ENSG..., ENSMUSG...), with an optional version suffix.
ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{6,}(?:\.\d+)?$")
#: var columns that hold gene symbols in h5ad/loom files keyed by Ensembl id, in order of trust.
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "feature_name", "gene_name", "symbol", "name")
#: var columns that hold Ensembl ids in h5ad/loom files keyed by symbol.
GENE_ID_COLUMNS = ("gene_ids", "gene_id", "Accession", "ensembl_id", "feature_id")
#: A matrix whose values are non-integer and all below this looks log-transformed
#: (log1p of 1e8 counts is 18.4; normalised-but-not-logged data goes far higher).
LOG_SCALE_MAX = 20.0
#: Absolute tolerance for calling a stored value an integer.
INTEGER_TOLERANCE = 1e-6
#: Input obs columns are kept (as `input_<name>`) only when there are at most this many.
MAX_INPUT_OBS_COLUMNS = 20

_MTX_NAMES = ("matrix.mtx.gz", "matrix.mtx")
_BARCODE_NAMES = ("barcodes.tsv.gz", "barcodes.tsv")
_FEATURE_NAMES = ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv")
_GEX = "Gene Expression"


# --------------------------------------------------------------------------------------------
# Small shared helpers
# --------------------------------------------------------------------------------------------


def _fail(sample: str, message: str) -> UserInputError:
    return UserInputError(f"sample {sample!r}: {message}")


#: What a truncated or corrupt gzip stream raises while it is read (BadGzipFile is an OSError).
DAMAGED_FILE_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def damaged_file(sample: str, path: Path, exc: BaseException) -> UserInputError:
    """The one message for a file that is cut short or corrupt: what, where, what to do."""
    return _fail(
        sample,
        f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); delete it and download "
        "or copy it again",
    )


def check_file_format(path: Path, *, declared: str, sample: str) -> None:
    """Refuse a file whose content is not the `format` the sample sheet declares.

    The content is sniffed (`cordatlas.io.formats.sniff_format`); an HDF5 file of no known
    layout is left to the reader, whose message names what it lacks.
    """
    real = sniff_format(path)
    if real == declared or (real == "hdf5" and declared in ("10x_h5", "h5ad", "loom")):
        return
    if real == "empty":
        raise _fail(sample, f"{path} is empty (0 bytes); download or copy it again")
    if real == "gzip_damaged":
        raise _fail(
            sample,
            f"{path} is truncated or corrupt (its gzip data do not decompress); delete it and "
            "download or copy it again",
        )
    if real in COUNT_FORMATS:
        try:
            auto = " (or auto)" if infer_format(str(path)) == real else ""
        except UserInputError:
            auto = ""
        fix = f"set `format` to {real}{auto} in the sample sheet"
    else:
        fix = "point `path` at the counts file itself (unpack an archive first)"
    raise _fail(
        sample, f"{path} is {describe_format(real)}, not {describe_format(declared)}; {fix}"
    )


def _open_hdf5(path: Path, *, sample: str, what: str) -> h5py.File:
    """An HDF5 file opened for reading; a truncated one gets the damaged-file message."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise _hdf5_error(sample, path, exc, what=what) from None


def _hdf5_error(sample: str, path: Path, exc: BaseException, *, what: str) -> UserInputError:
    text = str(exc).lower()
    if "truncated" in text or "can't read data" in text or "bad object header" in text:
        return damaged_file(sample, path, exc)
    return _fail(sample, f"{path} cannot be read as {what} ({type(exc).__name__}: {exc})")


def _decode(values: np.ndarray) -> list[str]:
    """Strings from an HDF5 dataset's values (fixed-length bytes or str)."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _open_text(path: Path) -> IO[str]:
    if _is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _examples(labels: Sequence[str], n: int = 3) -> str:
    return ", ".join(repr(str(x)) for x in list(labels)[:n])


def _to_csr_float32(matrix: Any) -> sp.csr_matrix:
    """Any 2-D matrix (dense, sparse, anndata backed) as CSR float32 without explicit zeros."""
    if sp.issparse(matrix):
        out = sp.csr_matrix(matrix)
    else:
        out = sp.csr_matrix(np.asarray(matrix))
    if out.dtype != np.float32:
        out = out.astype(np.float32)
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


#: Values checked at a time by :func:`describe_non_counts` (16M: 64 MB of float32).
_CHECK_BLOCK = 1 << 24


def describe_non_counts(matrix: Any) -> str | None:
    """Say why a matrix is not raw counts, or return None when it is.

    Every stored value is checked (`.data` of a sparse matrix): raw counts are finite, >= 0 and
    integers within 1e-6. The reason names what was found and what it looks like, e.g.
    ``"has negative values (min -2.03): looks scaled"`` or
    ``"has non-integer values (e.g. 1.53, max 6.49): looks log-normalised"``.
    """
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()
    if values.size == 0:
        return None
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(
        values.dtype, np.complexfloating
    ):
        return f"has non-numeric values (dtype {values.dtype})"
    if np.issubdtype(values.dtype, np.integer):
        vmin = values.min()
        return f"has negative values (min {vmin}): looks scaled" if vmin < 0 else None
    # in blocks: whole-array temporaries would add twice the values' size (2 GB at 167k cells)
    blocks = [values[i : i + _CHECK_BLOCK] for i in range(0, values.size, _CHECK_BLOCK)]
    n_not_finite = sum(int(block.size - np.isfinite(block).sum()) for block in blocks)
    if n_not_finite:
        return f"has {n_not_finite} NaN or infinite values: not counts"
    vmin = float(min(block.min() for block in blocks))
    if vmin < 0:
        return f"has negative values (min {vmin:.3g}): looks scaled"
    for block in blocks:
        off_integer = np.abs(block - np.rint(block)) > INTEGER_TOLERANCE
        if off_integer.any():
            example = float(block[np.argmax(off_integer)])
            vmax = float(max(b.max() for b in blocks))
            looks = (
                "looks log-normalised" if vmax <= LOG_SCALE_MAX else "looks normalised (not counts)"
            )
            return f"has non-integer values (e.g. {example:.3g}, max {vmax:.3g}): {looks}"
    return None


def check_raw_counts(matrix: Any, *, sample: str, where: str) -> None:
    """Raise UserInputError unless `matrix` holds raw counts (see `describe_non_counts`).

    `where` names the matrix for the message, e.g. ``"X of /data/s1.csv.gz"``.
    """
    problem = describe_non_counts(matrix)
    if problem is not None:
        raise _fail(sample, f"{where} {problem}; provide raw UMI counts (integers >= 0)")


def _pick_counts(
    candidates: Sequence[tuple[str, Callable[[], Any]]], *, sample: str, path: Path
) -> tuple[str, Any]:
    """The first candidate matrix that holds raw counts, with its label; else one clear error."""
    problems = []
    for label, load in candidates:
        matrix = load()
        problem = describe_non_counts(matrix)
        if problem is None:
            return label, matrix
        problems.append(f"{label} {problem}")
    raise _fail(
        sample,
        f"{path} holds no raw counts: {'; '.join(problems)}; provide raw UMI counts "
        "(integers >= 0) in layers['counts'], .raw.X or X",
    )


def harmonise_genes(
    symbols: Sequence[object], *, gene_ids: Sequence[object] | None = None
) -> pd.DataFrame:
    """A var table indexed by unique gene symbols, in file order.

    Empty or missing symbols are replaced by the gene id. Duplicates are made unique the scanpy
    way (`anndata.utils.make_index_unique`: the second occurrence gets ``-1``, the third ``-2``
    ...). The symbol as read is kept in ``gene_symbol``, the id (when known) in ``gene_ids``.
    """
    ids = None if gene_ids is None else [_clean_label(x) for x in gene_ids]
    names = []
    for i, symbol in enumerate(symbols):
        name = _clean_label(symbol)
        if not name:
            name = ids[i] if ids is not None and ids[i] else "unnamed_gene"
        names.append(name)
    var = pd.DataFrame({"gene_symbol": names})
    if ids is not None:
        var["gene_ids"] = [x if x else names[i] for i, x in enumerate(ids)]
    with warnings.catch_warnings():
        # anndata warns when a symbol already ends in -<n>; its renaming still stays unique
        warnings.simplefilter("ignore", UserWarning)
        var.index = make_index_unique(pd.Index(names, dtype=object))
    return var


def _clean_label(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return "" if text.strip().lower() in {"", "nan", "none"} else text.strip()


def _counts_anndata(
    matrix: Any,
    *,
    barcodes: Sequence[str],
    var: pd.DataFrame,
    sample: str,
    path: Path,
    provenance: dict[str, Any],
    obs: pd.DataFrame | None = None,
) -> ad.AnnData:
    """Assemble a reader's output: cells x genes CSR float32, barcodes as obs_names."""
    barcode_index = pd.Index([str(b) for b in barcodes], dtype=object)
    if barcode_index.has_duplicates:
        dups = barcode_index[barcode_index.duplicated()].unique()
        raise _fail(
            sample,
            f"{path} has {len(dups)} duplicated cell barcode(s) (e.g. {_examples(dups)}); "
            "a file pooling several runs needs unique barcodes, or set `barcode_pattern` in "
            "the sample sheet to select one run",
        )
    X = _to_csr_float32(matrix)
    obs = pd.DataFrame(index=barcode_index) if obs is None else obs.set_axis(barcode_index)
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["ingest"] = provenance
    return adata


# --------------------------------------------------------------------------------------------
# Readers: one per format, each returning cells x genes with unique symbol var_names
# --------------------------------------------------------------------------------------------


def read_10x_h5(path: Path | str, *, sample: str, genome: str | None = None) -> ad.AnnData:
    """Read a Cell Ranger HDF5 matrix (v3 `matrix/features` layout or v2 one group per genome).

    v3: only "Gene Expression" features are kept (the number dropped is recorded); a file with
    several genomes needs `genome`. v2: the group named `genome` is read, or the only group.

    Parameters
    ----------
    path
        The `.h5` file.
    sample
        Sample id, for error messages.
    genome
        Genome to read when the file holds several (e.g. ``"GRCh38"``, ``"hg19"``).

    Returns
    -------
    Cells x genes AnnData; var_names unique symbols, ``var["gene_ids"]`` Ensembl ids,
    ``uns["ingest"]`` with ``format``, ``version`` ("v2"/"v3"), ``genome``,
    ``n_features_dropped_non_gex``.
    """
    path = Path(path)
    check_file_format(path, declared="10x_h5", sample=sample)
    with _open_hdf5(path, sample=sample, what="a Cell Ranger HDF5 file") as f:
        try:
            if "matrix" in f:
                return _read_10x_h5_v3(f["matrix"], sample=sample, path=path, genome=genome)
            return _read_10x_h5_v2(f, sample=sample, path=path, genome=genome)
        except KeyError as exc:
            raise _fail(
                sample,
                f"{path} is not a complete Cell Ranger matrix (missing {exc}); use the .h5 "
                "Cell Ranger wrote, or set `format` to what the file holds",
            ) from None
        except OSError as exc:
            raise _hdf5_error(sample, path, exc, what="a Cell Ranger HDF5 file") from None


def _read_10x_h5_v2(f: h5py.File, *, sample: str, path: Path, genome: str | None) -> ad.AnnData:
    """Cell Ranger 1-2 layout: one group per genome."""
    groups = sorted(k for k in f if isinstance(f[k], h5py.Group))
    if not groups:
        raise _fail(sample, f"{path} is HDF5 but not a Cell Ranger matrix (no groups)")
    if genome is None:
        if len(groups) > 1:
            raise _fail(
                sample,
                f"{path} holds several genomes ({', '.join(groups)}); set `genome` in the "
                "sample sheet to one of them",
            )
        chosen = groups[0]
    elif genome in groups:
        chosen = genome
    else:
        raise _fail(
            sample,
            f"genome {genome!r} is not in {path} (it holds {', '.join(groups)}); fix "
            "`genome` in the sample sheet",
        )
    group = f[chosen]
    missing = [k for k in ("data", "indices", "indptr", "shape", "barcodes") if k not in group]
    if missing or ("genes" not in group and "gene_names" not in group):
        raise _fail(sample, f"{path} group {chosen!r} is not a Cell Ranger v2 matrix")
    n_genes, n_cells = (int(x) for x in group["shape"][()])
    matrix = _csr_from_parts(group, shape=(n_cells, n_genes), sample=sample, path=path)
    ids = _decode(group["genes"][()]) if "genes" in group else None
    symbols = _decode(group["gene_names"][()]) if "gene_names" in group else ids
    barcodes = _decode(group["barcodes"][()])
    provenance = {
        "format": "10x_h5",
        "version": "v2",
        "genome": chosen,
        "n_features_dropped_non_gex": 0,
    }
    return _counts_anndata(
        matrix,
        barcodes=barcodes,
        var=harmonise_genes(symbols, gene_ids=ids),
        sample=sample,
        path=path,
        provenance=provenance,
    )


def _csr_from_parts(
    group: h5py.Group, *, shape: tuple[int, int], sample: str, path: Path
) -> sp.csr_matrix:
    """The CSR matrix of a 10x group's data/indices/indptr, refused when they do not fit."""
    try:
        return sp.csr_matrix(
            (group["data"][()], group["indices"][()], group["indptr"][()]), shape=shape
        )
    except ValueError as exc:
        raise _fail(
            sample,
            f"{path}: its data, indices and indptr do not form a {shape[1]} genes x {shape[0]} "
            f"cells matrix ({exc}); the file is corrupt, download or copy it again",
        ) from None


def _read_10x_h5_v3(
    group: h5py.Group, *, sample: str, path: Path, genome: str | None
) -> ad.AnnData:
    needed = ("data", "indices", "indptr", "shape", "barcodes", "features/id", "features/name")
    missing = [f"matrix/{k}" for k in needed if k not in group]
    if missing:
        raise _fail(
            sample,
            f"{path} is not a complete Cell Ranger v3 matrix (it lacks {', '.join(missing)}); "
            "use the .h5 Cell Ranger wrote, or set `format` to what the file holds",
        )
    n_genes, n_cells = (int(x) for x in group["shape"][()])
    matrix = _csr_from_parts(group, shape=(n_cells, n_genes), sample=sample, path=path)
    features = group["features"]
    ids = _decode(features["id"][()])
    symbols = _decode(features["name"][()])
    types = (
        np.array(_decode(features["feature_type"][()]))
        if "feature_type" in features
        else np.full(n_genes, _GEX)
    )
    genomes = np.array(_decode(features["genome"][()])) if "genome" in features else None
    keep = types == _GEX
    if not keep.any():
        found = sorted(set(types.tolist()))
        raise _fail(sample, f"{path} has no 'Gene Expression' features (found {found})")
    chosen = None
    if genomes is not None:
        available = sorted(set(genomes[keep].tolist()))
        if genome is not None:
            if genome not in available:
                raise _fail(
                    sample,
                    f"genome {genome!r} is not in {path} (its genomes are "
                    f"{', '.join(available)}); fix `genome` in the sample sheet",
                )
            chosen = genome
        elif len(available) > 1:
            raise _fail(
                sample,
                f"{path} holds several genomes ({', '.join(available)}); set `genome` in the "
                "sample sheet to one of them",
            )
        else:
            chosen = available[0]
        keep &= genomes == chosen
    n_non_gex = int((types != _GEX).sum())
    index = np.flatnonzero(keep)
    provenance = {
        "format": "10x_h5",
        "version": "v3",
        "genome": chosen if chosen is not None else "",
        "n_features_dropped_non_gex": n_non_gex,
    }
    if n_non_gex:
        log.info("sample %s: dropped %d non-Gene-Expression features", sample, n_non_gex)
    return _counts_anndata(
        matrix[:, index],
        barcodes=_decode(group["barcodes"][()]),
        var=harmonise_genes([symbols[i] for i in index], gene_ids=[ids[i] for i in index]),
        sample=sample,
        path=path,
        provenance=provenance,
    )


def _is_mtx_folder(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _MTX_NAMES)


def _first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def find_mtx_folder(path: Path | str, *, sample: str, genome: str | None = None) -> Path:
    """The Matrix Market folder at or below `path` (searched up to three levels down).

    `path` may be the folder itself, the folder's `matrix.mtx[.gz]`, or a directory holding
    exactly one such folder (Cell Ranger 2's `filtered_gene_bc_matrices/<genome>/`); with several,
    the one named `genome` is taken.
    """
    path = Path(path)
    if path.is_file() and path.name in _MTX_NAMES:
        return path.parent
    if not path.is_dir():
        raise _fail(sample, f"{path} is not a directory of 10x Matrix Market files")
    if _is_mtx_folder(path):
        return path
    found = []
    root_depth = len(path.parts)
    for dirpath, dirnames, _ in os.walk(path):
        dirnames.sort()
        here = Path(dirpath)
        if len(here.parts) - root_depth >= 3:
            dirnames.clear()
        if here != path and _is_mtx_folder(here):
            found.append(here)
            dirnames.clear()
    if len(found) == 1:
        return found[0]
    if not found:
        raise _fail(
            sample,
            f"no matrix.mtx or matrix.mtx.gz found in {path} or its subfolders; point `path` to "
            "the Cell Ranger folder holding matrix.mtx(.gz), barcodes.tsv(.gz) and "
            "features.tsv.gz or genes.tsv",
        )
    named = [f for f in found if genome is not None and f.name == genome]
    if len(named) == 1:
        return named[0]
    listing = ", ".join(str(f.relative_to(path)) for f in found)
    raise _fail(
        sample,
        f"{path} holds several matrix folders ({listing}); point `path` to one of them or set "
        "`genome` to the folder's name",
    )


@contextmanager
def _extracted_tarball(path: Path, *, sample: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cordatlas_ingest_") as tmp:
        try:
            with tarfile.open(path, "r:*") as archive:
                archive.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, *DAMAGED_FILE_ERRORS) as exc:
            raise _fail(
                sample,
                f"{path} cannot be extracted as a tar archive ({type(exc).__name__}: {exc}): it "
                "is truncated, corrupt or not a tar archive; delete it and download or copy it "
                "again",
            ) from None
        yield Path(tmp)


def _is_tarball(path: Path) -> bool:
    return path.is_file() and (path.name.endswith((".tar.gz", ".tgz", ".tar")))


def read_10x_mtx(path: Path | str, *, sample: str, genome: str | None = None) -> ad.AnnData:
    """Read a 10x Matrix Market folder (Cell Ranger v2 genes.tsv or v3 features.tsv.gz).

    `path` may also be a directory holding exactly one such folder, or a `.tar.gz` of one (see
    `find_mtx_folder`). v3: only "Gene Expression" features are kept.

    Returns
    -------
    Cells x genes AnnData; var_names unique symbols, ``var["gene_ids"]`` the first column of the
    features file, ``uns["ingest"]`` with ``format``, ``version``, ``mtx_folder``,
    ``n_features_dropped_non_gex``.
    """
    path = Path(path)
    if path.is_file():
        check_file_format(path, declared="10x_mtx", sample=sample)
    if _is_tarball(path):
        with _extracted_tarball(path, sample=sample) as tmp:
            adata = read_10x_mtx(tmp, sample=sample, genome=genome)
        folder = Path(adata.uns["ingest"]["mtx_folder"])
        adata.uns["ingest"]["mtx_folder"] = f"{path}!/{folder.relative_to(tmp)}"
        return adata
    folder = find_mtx_folder(path, sample=sample, genome=genome)
    mtx = _first_existing(folder, _MTX_NAMES)
    barcodes_file = _first_existing(folder, _BARCODE_NAMES)
    features_file = _first_existing(folder, _FEATURE_NAMES)
    if mtx is None or barcodes_file is None or features_file is None:
        raise _fail(
            sample,
            f"{folder} lacks barcodes.tsv(.gz) or features.tsv.gz/genes.tsv next to its "
            "matrix.mtx; copy the complete Cell Ranger folder",
        )
    genes_x_cells = _read_mtx(mtx, sample=sample)
    features = _read_tsv_table(features_file, sample=sample)
    barcodes = _read_tsv_table(barcodes_file, sample=sample).iloc[:, 0].tolist()
    n_genes, n_cells = genes_x_cells.shape
    if n_genes != len(features) or n_cells != len(barcodes):
        raise _fail(
            sample,
            f"{mtx} is {n_genes} features x {n_cells} cells but {features_file.name} lists "
            f"{len(features)} features and {barcodes_file.name} {len(barcodes)} barcodes; "
            "the folder mixes files from different runs",
        )
    version = "v3" if features_file.name.startswith("features") else "v2"
    ids = features.iloc[:, 0].tolist()
    symbols = features.iloc[:, 1].tolist() if features.shape[1] > 1 else ids
    keep = np.ones(n_genes, dtype=bool)
    if features.shape[1] > 2:
        keep = (features.iloc[:, 2] == _GEX).to_numpy()
        if not keep.any():
            raise _fail(sample, f"{features_file} has no 'Gene Expression' features")
    n_non_gex = int((~keep).sum())
    index = np.flatnonzero(keep)
    provenance = {
        "format": "10x_mtx",
        "version": version,
        "mtx_folder": str(folder),
        "n_features_dropped_non_gex": n_non_gex,
    }
    return _counts_anndata(
        sp.csr_matrix(genes_x_cells).T.tocsr()[:, index],
        barcodes=barcodes,
        var=harmonise_genes([symbols[i] for i in index], gene_ids=[ids[i] for i in index]),
        sample=sample,
        path=path,
        provenance=provenance,
    )


def _read_mtx(mtx: Path, *, sample: str) -> Any:
    """A Matrix Market file (gzipped or not) as scipy reads it; refused when damaged or foreign."""
    try:
        with gzip.open(mtx, "rb") if _is_gzip(mtx) else open(mtx, "rb") as handle:
            return scipy.io.mmread(handle)
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_file(sample, mtx, exc) from None
    except (ValueError, OSError, IndexError) as exc:
        raise _fail(
            sample,
            f"{mtx} is not a readable Matrix Market file ({type(exc).__name__}: {exc}); it must "
            "start with a '%%MatrixMarket matrix coordinate' line, as Cell Ranger writes it",
        ) from None


def _read_tsv_table(path: Path, *, sample: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise _fail(sample, f"{path} is empty; copy the complete Cell Ranger folder") from None
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_file(sample, path, exc) from None
    except (ValueError, OSError) as exc:
        raise _fail(sample, f"{path} is not a readable tab-separated file ({exc})") from exc
    return table


def _ensembl_fraction(labels: Sequence[str]) -> float:
    labels = list(labels)
    if not labels:
        return 0.0
    return sum(bool(ENSEMBL_RE.match(str(x))) for x in labels) / len(labels)


def _var_from_table(var: pd.DataFrame) -> pd.DataFrame:
    """Harmonise an h5ad/loom var table: symbols as names, Ensembl ids in gene_ids."""
    names = [str(x) for x in var.index]
    symbol_col = next((c for c in SYMBOL_COLUMNS if c in var.columns), None)
    if _ensembl_fraction(names) >= 0.9 and symbol_col is not None:
        return harmonise_genes(var[symbol_col].tolist(), gene_ids=names)
    id_col = next((c for c in GENE_ID_COLUMNS if c in var.columns), None)
    ids = var[id_col].tolist() if id_col is not None else None
    return harmonise_genes(names, gene_ids=ids)


def _input_obs(obs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Input obs columns as `input_<name>` strings when few; else none. Returns (obs, n_dropped)."""
    if len(obs.columns) > MAX_INPUT_OBS_COLUMNS:
        return pd.DataFrame(index=obs.index), len(obs.columns)
    kept = pd.DataFrame(index=obs.index)
    for column in obs.columns:
        kept[f"input_{column}"] = obs[column].astype(str).to_numpy(dtype=object)
    return kept, 0


def read_h5ad_counts(path: Path | str, *, sample: str) -> ad.AnnData:
    """Read the raw counts of an h5ad file, dropping everything else.

    Counts are looked for in ``layers["counts"]``, then ``.raw.X``, then ``X``; the first that
    holds raw counts is taken and named in ``uns["ingest"]["counts_source"]``. If none does,
    UserInputError says what each holds. obsm/obsp/varm/layers/uns are dropped; input obs
    columns are kept as ``input_<name>`` strings when there are at most 20.
    """
    path = Path(path)
    check_file_format(path, declared="h5ad", sample=sample)
    _open_hdf5(path, sample=sample, what="h5ad").close()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = ad.read_h5ad(path)
    except Exception as exc:  # anndata raises many types for a broken or foreign file
        raise _hdf5_error(sample, path, exc, what="h5ad") from exc
    candidates: list[tuple[str, Callable[[], Any]]] = []
    if "counts" in source.layers:
        candidates.append(("layers['counts']", lambda: _to_csr_float32(source.layers["counts"])))
    if source.raw is not None:
        candidates.append((".raw.X", lambda: _to_csr_float32(source.raw.X)))
    candidates.append(("X", lambda: _to_csr_float32(source.X)))
    label, matrix = _pick_counts(candidates, sample=sample, path=path)
    var = source.raw.var if label == ".raw.X" else source.var
    obs, n_obs_dropped = _input_obs(source.obs)
    provenance = {
        "format": "h5ad",
        "counts_source": label,
        "n_input_obs_columns_dropped": n_obs_dropped,
    }
    return _counts_anndata(
        matrix,
        barcodes=source.obs_names.tolist(),
        var=_var_from_table(var),
        sample=sample,
        path=path,
        provenance=provenance,
        obs=obs,
    )


def read_loom_counts(path: Path | str, *, sample: str) -> ad.AnnData:
    """Read the raw counts of a loom file (genes x cells on disk).

    Counts come from the layer ``counts`` when present and raw, else the main matrix. Cell names
    come from the column attribute ``CellID`` (or ``obs_names``/``cell_id``/``barcode``), gene
    names from ``Gene`` (or ``var_names``/``gene_symbols``/``gene_name``), ids from
    ``Accession``; other column attributes become ``input_<name>`` when at most 20.
    """
    import loompy

    path = Path(path)
    check_file_format(path, declared="loom", sample=sample)
    _open_hdf5(path, sample=sample, what="loom").close()
    try:
        connection = loompy.connect(str(path), "r", validate=False)
    except Exception as exc:  # loompy/h5py raise several types for a foreign file
        raise _hdf5_error(sample, path, exc, what="loom") from exc
    with connection as lc:
        col_attrs = {k: np.asarray(lc.ca[k]) for k in lc.ca.keys()}
        row_attrs = {k: np.asarray(lc.ra[k]) for k in lc.ra.keys()}
        candidates: list[tuple[str, Callable[[], Any]]] = []
        if "counts" in lc.layers.keys():
            candidates.append(
                ("layers['counts']", lambda: _to_csr_float32(lc.layers["counts"].sparse().T))
            )
        candidates.append(("X", lambda: _to_csr_float32(lc.layers[""].sparse().T)))
        label, matrix = _pick_counts(candidates, sample=sample, path=path)
    n_cells, n_genes = matrix.shape
    cell_key = next(
        (k for k in ("CellID", "obs_names", "cell_id", "barcode") if k in col_attrs), None
    )
    if cell_key is None:
        raise _fail(sample, f"{path} has no CellID column attribute naming the cells")
    gene_key = next(
        (
            k
            for k in ("Gene", "var_names", "gene_symbols", "gene_name", "Accession")
            if k in row_attrs
        ),
        None,
    )
    if gene_key is None:
        raise _fail(sample, f"{path} has no Gene row attribute naming the genes")
    var = pd.DataFrame(
        {k: v for k, v in row_attrs.items() if k != gene_key and np.ndim(v) == 1},
        index=pd.Index(_decode(row_attrs[gene_key]), dtype=object),
    )
    obs_attrs = {k: v for k, v in col_attrs.items() if k != cell_key and np.ndim(v) == 1}
    obs, n_obs_dropped = _input_obs(pd.DataFrame(obs_attrs, index=range(n_cells)))
    provenance = {
        "format": "loom",
        "counts_source": label,
        "n_input_obs_columns_dropped": n_obs_dropped,
    }
    return _counts_anndata(
        matrix,
        barcodes=_decode(col_attrs[cell_key]),
        var=_var_from_table(var),
        sample=sample,
        path=path,
        provenance=provenance,
        obs=obs,
    )
