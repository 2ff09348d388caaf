"""AnnData files the rules hand to each other: how they are written, and read without matrices."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "DELIVERABLE_COMPRESSION",
    "STAGE_COMPRESSION",
    "copy_with_annotations",
    "copy_as_deliverable",
    "open_layer",
    "read_expression",
    "read_genes",
    "read_obs",
    "read_rows",
    "read_var",
    "read_without_matrices",
    "write_stage",
    "write_stage_by_rows",
]

#: h5ad compression of the AnnData files rules pass to each other (None) and of the atlas a user
#: keeps ("lzf"). Measured on 25,000 cells x 20,000 genes with two sparse matrices (X and
#: layers["counts"], 1,500 genes per cell), anndata 0.12.19 on the 2-core development machine:
#: gzip wrote in 11.1 s (0.18 GB), lzf in 2.6 s (0.41 GB), none in 0.3 s (0.60 GB); reading took
#: 2.8, 2.5 and 1.5 s. gzip made every atlas rule pay seconds per 25k cells for disk space only.
STAGE_COMPRESSION = None
DELIVERABLE_COMPRESSION = "lzf"


def write_stage(
    adata: ad.AnnData, path: str | os.PathLike[str], *, deliverable: bool = False
) -> Path:
    """Write an AnnData one rule hands to the next (uncompressed) or a user keeps (lzf)."""
    compression = DELIVERABLE_COMPRESSION if deliverable else STAGE_COMPRESSION
    adata.write_h5ad(path, compression=compression)
    return Path(path)


def write_stage_by_rows(
    adata: ad.AnnData, path: str | os.PathLike[str], rows: Iterable[sp.csr_matrix]
) -> Path:
    """Write `adata` as :func:`write_stage` does, with ``X`` from `rows`: CSR blocks of cells.

    The blocks (in cell order, together all of `adata`'s cells) are appended to the file's
    ``X`` one at a time (anndata's on-disk sparse dataset), so the whole matrix is never held.
    `adata` itself has no ``X``.
    """
    if adata.X is not None:
        raise ValueError("adata has an X; its rows are to come from `rows`")
    write_stage(adata, path)
    with h5py.File(path, "r+") as handle:
        n_rows = _append_rows(handle, "X", rows, compression=STAGE_COMPRESSION)
    if n_rows != adata.n_obs:
        raise ValueError(f"rows gave {n_rows} cells for an AnnData of {adata.n_obs}")
    return Path(path)


def _append_rows(
    handle: h5py.File, key: str, rows: Iterable[sp.spmatrix], *, compression: str | None
) -> int:
    """Write CSR blocks of cells one after another as the sparse matrix `key`; cells written."""
    from anndata.io import sparse_dataset, write_elem

    n_rows = 0
    for block in rows:
        if n_rows == 0:
            kwargs = {"compression": compression} if compression else {}
            write_elem(handle, key, sp.csr_matrix(block), dataset_kwargs=kwargs)
        else:
            sparse_dataset(handle[key]).append(sp.csr_matrix(block))
        n_rows += block.shape[0]
    return n_rows


def _row_blocks(matrix: h5py.Group | h5py.Dataset) -> Iterator[sp.csr_matrix | np.ndarray]:
    """An h5ad's on-disk matrix (CSR group or dense dataset), :data:`CHUNK_CELLS` cells at a
    time."""
    from anndata.io import sparse_dataset

    source = sparse_dataset(matrix) if isinstance(matrix, h5py.Group) else matrix
    for start in range(0, source.shape[0], CHUNK_CELLS):
        yield source[start : start + CHUNK_CELLS]


def _matrix_keys(handle: h5py.File) -> list[str]:
    """The expression matrices of an open h5ad: ``X`` and every layer."""
    layers = [f"layers/{name}" for name in handle["layers"]] if "layers" in handle else []
    return (["X"] if "X" in handle else []) + layers


def _check_same_cells_genes(handle: h5py.File, adata: ad.AnnData, source: object) -> None:
    from anndata.io import read_elem

    obs_names = pd.Index(read_elem(handle["obs"]).index)
    var_names = pd.Index(read_elem(handle["var"]).index)
    if not obs_names.equals(adata.obs_names) or not var_names.equals(adata.var_names):
        raise ValueError(
            f"the annotations do not hold the cells and genes of {source} in the same order"
        )


def copy_with_annotations(
    source: str | os.PathLike[str], path: str | os.PathLike[str], adata: ad.AnnData
) -> Path:
    """`source` (an h5ad) copied to `path`, with `adata`'s obs, obsm, obsp, varm and uns.

    For annotate_cells, whose atlas is the normalised data plus cell annotations: the file is
    copied as bytes (its ``X`` and layers are never read or rewritten), then the annotations
    are written over the copy's; uns is the source's updated with `adata`'s. `adata` must
    hold the source's cells and genes in the same order; its own ``X`` is not written.
    """
    from anndata.io import read_elem, write_elem

    path = Path(path)
    shutil.copyfile(source, path)
    with h5py.File(path, "r+") as handle:
        _check_same_cells_genes(handle, adata, source)
        uns = read_elem(handle["uns"]) if "uns" in handle else {}
        uns.update(adata.uns)
        elements = {
            "obs": adata.obs,
            "obsm": dict(adata.obsm),
            "obsp": dict(adata.obsp),
            "varm": dict(adata.varm),
            "uns": uns,
        }
        for key, value in elements.items():
            if key in handle:
                del handle[key]
            write_elem(handle, key, value)
    return path


def copy_as_deliverable(
    source: str | os.PathLike[str], path: str | os.PathLike[str], adata: ad.AnnData
) -> Path:
    """`adata` written as a deliverable (:func:`write_stage`), with `source`'s matrices.

    For write_atlas: ``X`` and every layer of `source` (an h5ad of the same cells and genes in
    the same order) are copied into `path` :data:`CHUNK_CELLS` cells at a time and compressed
    (:data:`DELIVERABLE_COMPRESSION`), so the job holds one chunk, never a matrix; `adata`
    brings the annotations (its own ``X`` and layers are not written).
    """
    with h5py.File(source, "r") as handle:
        _check_same_cells_genes(handle, adata, source)
    annotations = ad.AnnData(
        obs=adata.obs,
        var=adata.var,
        obsm=dict(adata.obsm),
        obsp=dict(adata.obsp),
        varm=dict(adata.varm),
        uns=adata.uns,
    )
    write_stage(annotations, path, deliverable=True)
    with h5py.File(source, "r") as handle, h5py.File(path, "r+") as target:
        for key in _matrix_keys(handle):
            matrix = handle[key]
            if isinstance(matrix, h5py.Dataset):  # dense: copied as it is stored
                target.copy(matrix, key)
            else:
                _append_rows(target, key, _row_blocks(matrix), compression=DELIVERABLE_COMPRESSION)
    return Path(path)


def read_without_matrices(path: str | os.PathLike[str]) -> ad.AnnData:
    """An h5ad's cells (obs, obsm, obsp, uns) and genes (var, varm), without X or layers.

    For rules that need labels, embeddings or the kNN graph only (evaluate_integration,
    write_atlas): the expression matrices are the bulk of the file and are never read.
    """
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        parts = {
            key: read_elem(handle[key])
            for key in ("obs", "var", "obsm", "obsp", "varm", "uns")
            if key in handle
        }
    return ad.AnnData(
        obs=parts["obs"],
        var=parts["var"],
        obsm=parts.get("obsm"),
        obsp=parts.get("obsp"),
        varm=parts.get("varm"),
        uns=parts.get("uns"),
    )


def read_obs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """An h5ad's cell annotations (obs) alone.

    anndata's backed mode keeps only X on disk: it reads layers, obsm, obsp and uns into memory,
    so ``read_h5ad(path, backed="r").obs`` cost 1.4 GB and 6.8 s on the 100,000-cell benchmark
    atlas, this 0.17 GB and 0.8 s.
    """
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        return read_elem(handle["obs"])


def read_rows(
    path: str | os.PathLike[str], rows: np.ndarray, *, uns_keys: Collection[str] = ()
) -> ad.AnnData:
    """Some cells of an h5ad: their ``X`` rows, obs, the file's var and the `uns_keys` of uns.

    For rules that test one group of cells at a time (test_cell_level_de): only `rows` (a
    boolean mask over the file's cells, in file order) of ``X`` leave the disk, and no layer,
    embedding, graph or other uns entry is read, so a job's memory follows the group, not the
    atlas.
    """
    from anndata.io import read_elem, sparse_dataset

    with h5py.File(path, "r") as handle:
        obs = read_elem(handle["obs"])
        mask = np.asarray(rows, dtype=bool)
        if mask.shape != (len(obs),):
            raise ValueError(f"rows must be a mask of {len(obs)} cells, got {mask.shape}")
        index = np.flatnonzero(mask)
        matrix = handle["X"]
        X = sparse_dataset(matrix)[index] if isinstance(matrix, h5py.Group) else matrix[index]
        return ad.AnnData(
            X=X,
            obs=obs.iloc[index].copy(),
            var=read_elem(handle["var"]),
            uns=_read_uns(handle, uns_keys),
        )


#: Cells read, or computed, at a time by the chunked stages (read_genes, run_pca,
#: normalise_to_file, the merge's gene filter, the pseudobulk sums): one chunk in memory.
CHUNK_CELLS = 10_000


def read_genes(path: str | os.PathLike[str], genes: np.ndarray) -> ad.AnnData:
    """An h5ad's ``X`` restricted to some genes, with obs, those genes' var and uns (no layers).

    For integrate_samples, whose PCA reads the highly variable genes only: ``X`` is read
    :data:`CHUNK_CELLS` cells at a time and each chunk cut to `genes` (a boolean mask over the
    file's genes) before the next is read, so the job never holds the full matrix or the
    counts layer.
    """
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        var = read_elem(handle["var"])
        mask = np.asarray(genes, dtype=bool)
        if mask.shape != (len(var),):
            raise ValueError(f"genes must be a mask of {len(var)} genes, got {mask.shape}")
        obs = read_elem(handle["obs"])
        matrix = handle["X"]
        sparse = isinstance(matrix, h5py.Group)
        chunks = [block[:, mask] for block in _row_blocks(matrix)]
        X = (sp.vstack(chunks, format="csr") if sparse else np.vstack(chunks)) if chunks else None
        uns = read_elem(handle["uns"]) if "uns" in handle else {}
    return ad.AnnData(X=X, obs=obs, var=var.iloc[np.flatnonzero(mask)].copy(), uns=uns)


def read_var(path: str | os.PathLike[str]) -> pd.DataFrame:
    """An h5ad's gene annotations (var) alone."""
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        return read_elem(handle["var"])


def read_expression(path: str | os.PathLike[str], *, uns_keys: Collection[str] = ()) -> ad.AnnData:
    """An h5ad's ``X`` (log-normalised expression) with obs, var and the `uns_keys` of uns.

    For rules that test or score every cell on its expression (find_markers, score_signatures,
    score_cycling): the counts layer, embeddings and the kNN graph are never read.
    """
    with h5py.File(path, "r") as handle:
        from anndata.io import read_elem

        return _with_annotations(handle, read_elem(handle["X"]), uns_keys)


@contextlib.contextmanager
def open_layer(
    path: str | os.PathLike[str], layer: str, *, uns_keys: Collection[str] = ()
) -> Iterator[ad.AnnData]:
    """One layer of an h5ad as ``X`` left on disk, with obs, var and the `uns_keys` of uns.

    For aggregate_pseudobulk, which sums the raw counts (``layers["counts"]``) a chunk of cells
    at a time: inside the ``with`` block ``X`` is the file's matrix (anndata's on-disk sparse
    dataset, or an h5py dataset when dense), whose row slices are read on demand; the
    log-normalised ``X``, embeddings and graphs are never read.

    Raises
    ------
    UserInputError
        The file has no such layer.
    """
    from anndata.io import sparse_dataset

    from cordatlas.errors import UserInputError

    with h5py.File(path, "r") as handle:
        layers = handle["layers"] if "layers" in handle else {}
        if layer not in layers:
            raise UserInputError(
                f"{path} has no layer {layer!r} (layers: {sorted(layers)}); it is written by "
                "normalise_select_genes: rerun the workflow from there."
            )
        matrix = layers[layer]
        on_disk = sparse_dataset(matrix) if isinstance(matrix, h5py.Group) else matrix
        yield _with_annotations(handle, on_disk, uns_keys)


def _with_annotations(handle: h5py.File, matrix, uns_keys: Collection[str]) -> ad.AnnData:
    """`matrix` (read, or left on disk) as ``X``, with the open h5ad's obs, var and `uns_keys`."""
    from anndata.io import read_elem

    return ad.AnnData(
        X=matrix,
        obs=read_elem(handle["obs"]),
        var=read_elem(handle["var"]),
        uns=_read_uns(handle, uns_keys),
    )


def _read_uns(handle: h5py.File, keys: Collection[str]) -> dict:
    """The `keys` of an open h5ad's uns that it has (the rest of uns is never read)."""
    from anndata.io import read_elem

    uns = handle["uns"] if "uns" in handle else {}
    return {key: read_elem(uns[key]) for key in keys if key in uns}
