"""Round trips of every count writer through the scanpy/anndata readers the workflow uses."""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from cordatlas.errors import UserInputError
from cordatlas.io.writers import (
    COUNT_FORMATS,
    write_10x_h5,
    write_10x_mtx,
    write_counts,
    write_delimited,
    write_h5ad,
    write_loom,
)


def _counts(seed: int = 3) -> ad.AnnData:
    """Small raw-count AnnData with an all-zero cell and an all-zero gene (edge cases)."""
    rng = np.random.default_rng(seed)
    n_cells, n_genes = 40, 25
    dense = rng.negative_binomial(2, 0.6, size=(n_cells, n_genes)).astype(np.int32)
    dense[5] = 0
    dense[:, 7] = 0
    dense[0, 0] = 1234  # a large count must survive every format
    genes = ["MT-CO1", "HLA-A", "CD3E", "HBB"] + [f"SIMG{i:05d}" for i in range(1, n_genes - 3)]
    barcodes = [
        "".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(n_cells)
    ]  # 16-bp, unique with overwhelming probability
    assert len(set(barcodes)) == n_cells
    return ad.AnnData(
        X=sp.csr_matrix(dense),
        obs=pd.DataFrame(index=barcodes),
        var=pd.DataFrame(
            {"gene_ids": [f"ENSG9{i:010d}" for i in range(1, n_genes + 1)]}, index=genes
        ),
    )


@pytest.fixture()
def counts() -> ad.AnnData:
    return _counts()


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _assert_same(read: ad.AnnData, expected: ad.AnnData, *, ids: bool = True) -> None:
    assert list(read.obs_names) == list(expected.obs_names)
    assert list(read.var_names) == list(expected.var_names)
    if ids:
        assert list(read.var["gene_ids"]) == list(expected.var["gene_ids"])
    np.testing.assert_array_equal(_dense(read.X), _dense(expected.X))


def _no_temp_files(directory: Path) -> None:
    leftovers = [p.name for p in directory.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


@pytest.mark.parametrize("version", [2, 3])
def test_10x_h5_round_trip(counts, tmp_path, version):
    path = write_10x_h5(counts, tmp_path / "m.h5", version=version, genome="GRCh38")
    read = sc.read_10x_h5(path, genome="GRCh38")
    _assert_same(read, counts)
    _no_temp_files(tmp_path)


def test_10x_h5_layouts_match_cell_ranger(counts, tmp_path):
    v3 = write_10x_h5(counts, tmp_path / "v3.h5", version=3)
    v2 = write_10x_h5(counts, tmp_path / "v2.h5", version=2, genome="hg19")
    with h5py.File(v3) as f:
        assert set(f["matrix"]) == {"barcodes", "data", "indices", "indptr", "shape", "features"}
        assert set(f["matrix/features"]) == {
            "id",
            "name",
            "feature_type",
            "genome",
            "_all_tag_keys",
        }
        assert list(f["matrix/shape"][()]) == [counts.n_vars, counts.n_obs]
        assert f["matrix/barcodes"].dtype.kind == "S"
        assert set(f["matrix/features/feature_type"][()]) == {b"Gene Expression"}
        # CSC genes x cells: indptr runs over cells, indices are gene positions
        assert f["matrix/indptr"].shape == (counts.n_obs + 1,)
        assert f["matrix/indices"][()].max() < counts.n_vars
    with h5py.File(v2) as f:
        assert list(f) == ["hg19"]
        assert set(f["hg19"]) == {
            "barcodes",
            "data",
            "indices",
            "indptr",
            "shape",
            "genes",
            "gene_names",
        }
        assert f["hg19/genes"][0] == b"ENSG90000000001"


def test_10x_h5_has_the_datasets_of_real_cell_ranger_files(counts, tmp_path, shared_data):
    fixtures = shared_data / "fixtures_scanpy_10x_formats"
    real_v3 = fixtures / "3.0.0" / "filtered_feature_bc_matrix.h5"
    real_v2 = fixtures / "1.2.0" / "filtered_gene_bc_matrices_h5.h5"
    ours_v3 = write_10x_h5(counts, tmp_path / "v3.h5", version=3)
    ours_v2 = write_10x_h5(counts, tmp_path / "v2.h5", version=2, genome="hg19_chr21")

    def layout(path: Path) -> dict[str, str]:
        out: dict[str, str] = {}
        with h5py.File(path) as f:
            f.visititems(
                lambda name, obj: (
                    out.__setitem__(name, obj.dtype.kind) if isinstance(obj, h5py.Dataset) else None
                )
            )
        return out

    assert layout(ours_v3) == layout(real_v3)
    assert layout(ours_v2) == layout(real_v2)


@pytest.mark.parametrize("version", [2, 3])
def test_10x_mtx_round_trip(counts, tmp_path, version):
    directory = write_10x_mtx(counts, tmp_path / "mtx", version=version)
    names = {p.name for p in directory.iterdir()}
    if version == 3:
        assert names == {"matrix.mtx.gz", "barcodes.tsv.gz", "features.tsv.gz"}
        with gzip.open(directory / "features.tsv.gz", "rt") as handle:
            first = handle.readline().rstrip("\n").split("\t")
        assert first == ["ENSG90000000001", "MT-CO1", "Gene Expression"]
    else:
        assert names == {"matrix.mtx", "barcodes.tsv", "genes.tsv"}
        first = (directory / "genes.tsv").read_text().splitlines()[0].split("\t")
        assert first == ["ENSG90000000001", "MT-CO1"]
    read = sc.read_10x_mtx(directory, var_names="gene_symbols")
    _assert_same(read, counts)
    _no_temp_files(tmp_path)


def test_10x_mtx_rewrite_in_other_version_leaves_no_stale_files(counts, tmp_path):
    directory = tmp_path / "mtx"
    write_10x_mtx(counts, directory, version=2)
    write_10x_mtx(counts, directory, version=3)
    assert {p.name for p in directory.iterdir()} == {
        "matrix.mtx.gz",
        "barcodes.tsv.gz",
        "features.tsv.gz",
    }
    _assert_same(sc.read_10x_mtx(directory), counts)


@pytest.mark.parametrize(
    ("name", "orientation", "sep"),
    [
        ("genes.csv.gz", "genes_x_cells", ","),
        ("genes.csv", "genes_x_cells", ","),
        ("cells.tsv.gz", "cells_x_genes", "\t"),
        ("cells.txt", "cells_x_genes", "\t"),
    ],
)
def test_delimited_round_trip(counts, tmp_path, name, orientation, sep):
    path = write_delimited(counts, tmp_path / name, orientation=orientation)
    is_gzip = path.read_bytes()[:2] == b"\x1f\x8b"
    assert is_gzip == name.endswith(".gz")
    opener = gzip.open if is_gzip else open
    with opener(path, "rt") as handle:
        header = handle.readline().rstrip("\n").split(sep)
        first_row = handle.readline().rstrip("\n").split(sep)
    assert header[0] == ""
    if orientation == "genes_x_cells":  # GEO style: gene symbol first, barcodes in the header
        assert header[1:] == list(counts.obs_names)
        assert first_row[0] == "MT-CO1"
        read = ad.io.read_text(path, delimiter=sep, first_column_names=True).T
    else:
        assert header[1:] == list(counts.var_names)
        assert first_row[0] == counts.obs_names[0]
        read = ad.io.read_text(path, delimiter=sep, first_column_names=True)
    _assert_same(read, counts, ids=False)
    _no_temp_files(tmp_path)


def test_delimited_scanpy_read_csv(counts, tmp_path):
    path = write_delimited(counts, tmp_path / "geo.csv.gz", orientation="genes_x_cells")
    read = sc.read_csv(path).T
    _assert_same(read, counts, ids=False)


def test_delimited_needs_a_known_separator(counts, tmp_path):
    with pytest.raises(UserInputError, match="separator"):
        write_delimited(counts, tmp_path / "counts.dat", orientation="cells_x_genes")
    path = write_delimited(counts, tmp_path / "counts.dat", orientation="cells_x_genes", sep=";")
    read = ad.io.read_text(path, delimiter=";", first_column_names=True)
    _assert_same(read, counts, ids=False)


def test_delimited_rejects_unknown_orientation(counts, tmp_path):
    with pytest.raises(UserInputError, match="orientation"):
        write_delimited(counts, tmp_path / "x.csv", orientation="sideways")  # type: ignore[arg-type]


def test_h5ad_round_trip(counts, tmp_path):
    path = write_h5ad(counts, tmp_path / "x.h5ad")
    read = ad.read_h5ad(path)
    _assert_same(read, counts)
    assert np.issubdtype(read.X.dtype, np.integer)
    _no_temp_files(tmp_path)


def test_loom_round_trip(counts, tmp_path):
    path = write_loom(counts, tmp_path / "x.loom")
    with h5py.File(path) as f:
        assert "var_names" in f["row_attrs"]
        assert "obs_names" in f["col_attrs"]
        assert f["matrix"].shape == (counts.n_vars, counts.n_obs)  # loom is genes x cells
    read = ad.io.read_loom(path, sparse=True, obs_names="obs_names", var_names="var_names")
    _assert_same(read, counts)
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("fmt", COUNT_FORMATS)
def test_write_counts_dispatches_every_format(counts, tmp_path, fmt):
    target = {
        "10x_h5": tmp_path / "x.h5",
        "10x_mtx": tmp_path / "mtx",
        "h5ad": tmp_path / "x.h5ad",
        "loom": tmp_path / "x.loom",
        "delimited": tmp_path / "x.tsv.gz",
    }[fmt]
    written = write_counts(counts, target, format=fmt, version=3, orientation="cells_x_genes")
    assert Path(written) == target
    if fmt == "10x_h5":
        read = sc.read_10x_h5(target)
    elif fmt == "10x_mtx":
        read = sc.read_10x_mtx(target)
    elif fmt == "h5ad":
        read = ad.read_h5ad(target)
    elif fmt == "loom":
        read = ad.io.read_loom(target, sparse=True, obs_names="obs_names", var_names="var_names")
    else:
        read = ad.io.read_text(target, delimiter="\t", first_column_names=True)
    _assert_same(read, counts, ids=fmt != "delimited")


def test_write_counts_rejects_unknown_format(counts, tmp_path):
    with pytest.raises(UserInputError, match="unknown count format"):
        write_counts(counts, tmp_path / "x.bin", format="parquet")


def test_writers_refuse_non_counts(counts, tmp_path):
    normalised = counts.copy()
    normalised.X = normalised.X.astype(np.float32) / 3.0
    with pytest.raises(UserInputError, match="non-integer"):
        write_10x_h5(normalised, tmp_path / "x.h5")
    negative = counts.copy()
    negative.X = negative.X.astype(np.int32) * -1
    with pytest.raises(UserInputError, match="negative"):
        write_h5ad(negative, tmp_path / "x.h5ad")
    assert not (tmp_path / "x.h5").exists()


def test_float_integer_counts_are_accepted(counts, tmp_path):
    as_float = counts.copy()
    as_float.X = as_float.X.astype(np.float32)
    path = write_10x_h5(as_float, tmp_path / "x.h5")
    _assert_same(sc.read_10x_h5(path), counts)


def test_gene_ids_fall_back_to_symbols(counts, tmp_path):
    bare = counts.copy()
    del bare.var["gene_ids"]
    read = sc.read_10x_h5(write_10x_h5(bare, tmp_path / "x.h5"))
    assert list(read.var["gene_ids"]) == list(counts.var_names)
